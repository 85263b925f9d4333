"""The plugin manager: discovery, errors, lazy loading, in-process plugins, PSPC_PLUGINS, data defaults, presets."""

import subprocess
import sys

import pytest

import pspc_core
from pspc_core import Param, ParameterError, PluginError, UnknownDenoiserError, UnknownPresetError, hookimpl
from pspc_core.plugins import plugin_manager


class Toy:
    """An in-test plugin declaring one toy denoiser."""

    @hookimpl
    def register_denoisers(self, register):
        register("toy", summary="scales z", params=[Param("gain", "float", 0.5, "factor"),
                                                    Param("sizes", "list[int]", [1], "a list")],
                 factory=lambda gain, sizes: (lambda z, t: z * gain))


@pytest.fixture
def toy():
    reg = plugin_manager()
    reg.register_plugin(Toy(), "toyplugin")
    yield reg
    reg.unregister_plugin("toyplugin")


def test_builtin_denoisers_are_listed():
    names = [s.name for s in pspc_core.list_denoisers()]
    assert {"empirical", "gaussian"} <= set(names)


def test_in_process_plugin_registers_and_creates(toy):
    spec = pspc_core.get_denoiser_spec("toy")
    assert spec.plugin == "toyplugin"
    den = pspc_core.create_denoiser("toy", gain="2", sizes="3,4")
    assert den(3.0, None) == 6.0


def test_unknown_name_lists_known_ones_and_the_closest():
    with pytest.raises(UnknownDenoiserError, match=r"did you mean 'empirical'.*known: .*gaussian"):
        pspc_core.get_denoiser_spec("empirica")


def test_unknown_parameter_names_the_accepted_ones(toy):
    with pytest.raises(ParameterError, match=r"no parameter 'gian'; accepted: gain, sizes"):
        pspc_core.create_denoiser("toy", gian=1)


def test_ill_typed_parameter_is_named(toy):
    with pytest.raises(ParameterError, match=r"'sizes' expects list\[int\]"):
        pspc_core.create_denoiser("toy", sizes="a,b")


def test_missing_required_parameter_is_named():
    with pytest.raises(ParameterError, match="needs parameter 'dataset'"):
        pspc_core.create_denoiser("empirical")


def test_a_second_plugin_claiming_a_name_is_kept_out_and_reported_once(toy):
    class Clash:
        @hookimpl
        def register_denoisers(self, register):
            register("toy", summary="again", factory="x:y")
            register("other", summary="never seen", factory="x:y")

    reg = plugin_manager()
    reg.register_plugin(Clash(), "clashplugin")
    try:
        names = [s.name for s in pspc_core.list_denoisers()]
        assert "toy" in names and "other" not in names and "empirical" in names
        assert pspc_core.get_denoiser_spec("toy").plugin == "toyplugin"
        assert "already registered by plugin 'toyplugin'" in reg.plugins["clashplugin"].error
        assert [n for n in reg.take_notices() if "clashplugin" in n] and not reg.take_notices()
    finally:
        reg.unregister_plugin("clashplugin")


def test_a_factory_that_cannot_be_imported_is_one_error_naming_the_plugin():
    class Missing:
        @hookimpl
        def register_denoisers(self, register):
            register("ghost", summary="its module is gone", factory="no_such_module:Ghost")

    reg = plugin_manager()
    reg.register_plugin(Missing(), "ghostplugin")
    try:
        with pytest.raises(PluginError, match="denoiser 'ghost' of plugin 'ghostplugin' cannot be loaded"):
            pspc_core.create_denoiser("ghost")
    finally:
        reg.unregister_plugin("ghostplugin")


def test_data_defaults_come_from_the_data_unless_given():
    class DataDefault:
        @hookimpl
        def register_denoisers(self, register):
            register("dd", summary="a data-dependent default",
                     params=[Param("level", "int", 0, "", data_default=f"{__name__}:level_for")],
                     factory=lambda level: level)

    reg = plugin_manager()
    reg.register_plugin(DataDefault(), "ddplugin")
    try:
        assert pspc_core.create_denoiser("dd", data="builtin:shapes") == 7
        assert pspc_core.create_denoiser("dd", data="other") == 0
        assert pspc_core.create_denoiser("dd", data="builtin:shapes", level=3) == 3
    finally:
        reg.unregister_plugin("ddplugin")


def level_for(data):
    return 7 if data == "builtin:shapes" else None


def test_a_plugin_whose_hook_fails_is_reported_and_others_still_work():
    class Broken:
        @hookimpl
        def register_denoisers(self, register):
            raise RuntimeError("boom")

    reg = plugin_manager()
    reg.register_plugin(Broken(), "broken")
    try:
        assert "empirical" in [s.name for s in pspc_core.list_denoisers()]
        assert "boom" in reg.plugins["broken"].error
    finally:
        reg.unregister_plugin("broken")


def _run(code: str, **env):
    import os

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, check=True).stdout


def test_listing_denoisers_imports_no_torch():
    out = _run("import sys, pspc_core; pspc_core.list_denoisers(); print('torch' in sys.modules)")
    assert out.strip() == "False"


def test_pspc_plugins_env_limits_which_plugins_load():
    out = _run("import pspc_core; print(sorted(s.name for s in pspc_core.list_denoisers()))", PSPC_PLUGINS="gaussian")
    assert out.strip() == "['gaussian']"


def test_pspc_plugins_naming_an_unknown_plugin_says_so():
    code = "import pspc_core; m = pspc_core.plugin_manager(); print(m.take_notices())"
    out = _run(code, PSPC_PLUGINS="gaussian,nosuch")
    assert "names nosuch, which no installed plugin provides" in out


def test_presets_from_a_user_registry_file(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('[presets.small-gauss]\ndenoiser = "gaussian"\nsummary = "rank 3"\nparams = { rank = 3 }\n')
    p = pspc_core.get_preset("small-gauss", f)
    assert (p.denoiser, p.params) == ("gaussian", {"rank": 3})
    with pytest.raises(UnknownPresetError, match="unknown preset 'small-gaus' .did you mean 'small-gauss'"):
        pspc_core.get_preset("small-gaus", f)


def test_every_installed_plugins_hooks_module_imports_nothing_heavy():
    """pspc imports every plugin's hooks at start-up (`pspc list`, `--help`): none may pull in torch."""
    from importlib.metadata import entry_points

    modules = sorted(ep.value for ep in entry_points(group="pspc"))
    code = f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False" and len(modules) >= 10


def test_every_registered_denoiser_declares_its_factorys_own_names_and_defaults():
    from pspc_core.params import signature_mismatches

    for spec in pspc_core.list_denoisers():
        assert signature_mismatches(spec.params, spec.load_factory()) == [], spec.name


def test_signature_mismatches_finds_drift():
    from pspc_core.params import REQUIRED, signature_mismatches

    def factory(dataset, chunk_size=1024, rank=None):
        pass

    declared = [Param("dataset", "dataset", REQUIRED), Param("chunk_size", "int", 2048), Param("extra", "int", 1)]
    assert signature_mismatches(declared, factory) == [
        "chunk_size: declared default 2048, factory default 1024", "extra: declared but not accepted by the factory"]
