"""The plugin registry: discovery, errors, lazy loading, in-process plugins, PSPC_PLUGINS."""

import subprocess
import sys

import pytest

import pspc_core
from pspc_core import Param, ParameterError, PluginError, UnknownDenoiserError, hookimpl
from pspc_core.registry import get_registry


class Toy:
    """An in-test plugin declaring one toy denoiser."""

    @hookimpl
    def register_denoisers(self, register):
        register("toy", summary="scales z", params=[Param("gain", "float", 0.5, "factor"),
                                                    Param("sizes", "list[int]", [1], "a list")],
                 factory=lambda gain, sizes: (lambda z, t: z * gain))


@pytest.fixture
def toy():
    reg = get_registry()
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


def test_two_plugins_claiming_one_name_is_an_error_naming_both(toy):
    class Clash:
        @hookimpl
        def register_denoisers(self, register):
            register("toy", summary="again", factory="x:y")

    reg = get_registry()
    reg.register_plugin(Clash(), "clashplugin")
    try:
        with pytest.raises(PluginError, match="toyplugin.*clashplugin|clashplugin.*toyplugin"):
            pspc_core.list_denoisers()
    finally:
        reg.unregister_plugin("clashplugin")


def test_a_plugin_whose_hook_fails_is_reported_and_others_still_work():
    class Broken:
        @hookimpl
        def register_denoisers(self, register):
            raise RuntimeError("boom")

    reg = get_registry()
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


def test_presets_from_a_user_registry_file(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('[presets.small-gauss]\ndenoiser = "gaussian"\nsummary = "rank 3"\nparams = { rank = 3 }\n')
    p = pspc_core.get_preset("small-gauss", f)
    assert (p.denoiser, p.params) == ("gaussian", {"rank": 3})
    with pytest.raises(UnknownDenoiserError, match="unknown preset"):
        pspc_core.get_preset("nope", f)
