"""Reading EDM network pickles without running them: the official layout loads, anything else is refused, and so
is a network whose embedded source is not that of an official EDM version (unless allow_modified_source).

The pickles here are written by the tests themselves in the official layout (docs/edm-networks.md, "Pickles"): every network class as a
`torch_utils.persistence._reconstruct_persistent_obj(meta)` reduce carrying module source text, `torch.nn.ModuleDict`
containers, tensors through `torch.storage._load_from_bytes`, numpy scalars. Their source is a stand-in that
edm_pickles counts as one more official version (it contains no EDM code, so no real fingerprint matches it).
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from pspc_core.errors import ParameterError, UnsafeCheckpointError
from pspc_network import convert, edm_source, load_network, read_checkpoint, save_safetensors

from edm_pickles import SMALL, STAND_IN_SRC, edm_pickle_bytes, perturbed, write_edm_pickle

def pickle_globals(data: bytes) -> set[str]:
    """Every 'module.name' a pickle (protocol 2-4) refers to, following memoized strings."""
    pushed, memo, found = [], [], set()
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            pushed.append(arg)
        elif op.name == "MEMOIZE":
            memo.append(pushed[-1] if pushed else None)
        elif op.name in ("BINGET", "LONG_BINGET"):
            pushed.append(memo[arg])
        elif op.name == "STACK_GLOBAL":
            found.add(f"{pushed[-2]}.{pushed[-1]}")
        elif op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        if op.name not in ("MEMOIZE", "BINGET", "LONG_BINGET", "SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            pushed.append(None)
    return found


def assert_refused(path: Path, *fragments: str) -> UnsafeCheckpointError:
    with pytest.raises(UnsafeCheckpointError) as info:
        load_network(path)
    message = str(info.value)
    assert "not a plain EDM checkpoint" in message or "safetensors" in message
    for fragment in fragments:
        assert fragment in message
    return info.value


# ---------------------------------------------------------------------------------------------------------------
# The official layout loads, bit for bit.

def test_written_pickles_use_exactly_the_globals_of_edm_pickles():
    data = edm_pickle_bytes(perturbed(SMALL["ddpmpp-edm-cond"]), SMALL["ddpmpp-edm-cond"]["init_kwargs"])
    expected = {"torch_utils.persistence._reconstruct_persistent_obj", "torch.nn.modules.container.ModuleDict",
                "torch._utils._rebuild_parameter", "torch._utils._rebuild_tensor_v2",
                "torch.storage._load_from_bytes", "collections.OrderedDict", "numpy.dtype"}
    found = pickle_globals(data)
    scalar = {g for g in found if g.endswith("multiarray.scalar")}
    assert found - scalar == expected and len(scalar) == 1


@pytest.mark.parametrize("name", sorted(SMALL))
def test_official_layout_pickle_loads_the_same_network(tmp_path, name):
    path = tmp_path / f"{name}.pkl"
    net = write_edm_pickle(path, SMALL[name])
    loaded = load_network(path)
    assert type(loaded) is type(net)
    got, want = loaded.state_dict(), net.state_dict()
    assert list(read_checkpoint(path)[1]) == list(want)  # flattened in state_dict() order
    for key, value in want.items():
        assert torch.equal(got[key], value), key
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, net.img_channels, 16, 16, generator=g)
    sigma = torch.tensor([0.3, 7.0])
    assert torch.equal(loaded(x, sigma), net(x, sigma))


def test_recorded_kwargs_are_kept_exactly_and_defaults_filled(tmp_path):
    path = tmp_path / "net.pkl"
    write_edm_pickle(path, SMALL["skip-vp"])
    config, state_dict = read_checkpoint(path)
    assert config == SMALL["skip-vp"]  # only what was passed: no defaults added
    net = load_network(path)
    assert net.model.map_layer0.out_features == 16 * 4  # channel_mult_emb default
    assert net.M == 1000 and net.beta_d == 19.9  # VPPrecond defaults


def test_module_source_is_never_executed(tmp_path):
    marker = tmp_path / "pwned.txt"
    src = f"open({str(marker)!r}, 'w').write('module_src ran')\n\nclass EDMPrecond:\n    pass\n"
    path = tmp_path / "net.pkl"
    write_edm_pickle(path, SMALL["ncsnpp-ve"], module_src=src)
    with pytest.raises(UnsafeCheckpointError, match="saved from a modified EDM"):
        load_network(path)  # the source is not official: refused (only parsed, never run)
    net = load_network(path, allow_modified_source=True)
    assert net.img_resolution == 16
    assert not marker.exists()
    exec(compile(src, "<module_src>", "exec"), {})  # what the official reader does: the file would appear
    assert marker.exists()


def test_os_system_reduce_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "system-ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"ema": Payload()}, protocol=4))
    assert_refused(path, "system")
    assert not marker.exists()


def test_payload_hidden_beside_a_valid_network_is_refused(tmp_path):
    marker = tmp_path / "system-ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    net = perturbed(SMALL["ncsnpp-ve"])
    path = tmp_path / "evil.pkl"
    path.write_bytes(edm_pickle_bytes(net, SMALL["ncsnpp-ve"]["init_kwargs"], extra={"dataset_kwargs": Payload()}))
    assert_refused(path, "system")
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("os", "system"), ("posix", "system"), ("subprocess", "Popen"), ("torch", "load"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("numpy.core.multiarray", "_reconstruct"),
    ("torch_utils.persistence", "persistent_class"), ("training.networks", "EDMPrecond"),
])
def test_any_global_outside_the_allowlist_is_refused(tmp_path, module, name):
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R.")
    assert_refused(path, f"{module}.{name}")


def test_persistent_ids_are_refused(tmp_path):
    path = tmp_path / "pid.pkl"
    path.write_bytes(b"\x80\x02X\x01\x00\x00\x00aQ.")
    assert_refused(path, "persistent id")


@pytest.mark.parametrize("keep", [0.01, 0.5, 0.999])
def test_truncated_pickle_is_refused(tmp_path, keep):
    data = edm_pickle_bytes(perturbed(SMALL["ncsnpp-ve"]), SMALL["ncsnpp-ve"]["init_kwargs"])
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: int(len(data) * keep)])
    assert_refused(path)


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n", b"\x89PNG\r\n\x1a\n" + bytes(64),
                                     b"\x00" * 100])
def test_non_pickle_file_is_refused(tmp_path, content):
    path = tmp_path / "not-a-network.pkl"
    path.write_bytes(content)
    assert_refused(path)


def test_torch_save_zip_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, path)
    assert zipfile.is_zipfile(path)
    assert_refused(path, "zip")


def test_pickle_without_a_network_is_refused(tmp_path):
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"loss_fn": None, "ema": 3}, protocol=4))
    assert_refused(path, "'ema'")


def test_unknown_network_class_is_refused(tmp_path):
    net = perturbed(SMALL["ncsnpp-ve"])
    data = edm_pickle_bytes(net, SMALL["ncsnpp-ve"]["init_kwargs"])
    path = tmp_path / "renamed.pkl"
    path.write_bytes(data.replace(b"VEPrecond", b"XYPrecond"))
    with pytest.raises(UnsafeCheckpointError, match="XYPrecond"):
        load_network(path)


def test_weights_that_do_not_fit_the_recorded_architecture_are_refused(tmp_path):
    net = perturbed(SMALL["ncsnpp-ve"])
    kwargs = dict(SMALL["ncsnpp-ve"]["init_kwargs"], model_channels=32)  # the weights are for 16
    path = tmp_path / "mismatch.pkl"
    path.write_bytes(edm_pickle_bytes(net, kwargs))
    with pytest.raises(UnsafeCheckpointError, match="do not match"):
        load_network(path)


def test_missing_checkpoint_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        load_network(tmp_path / "nope.pkl")


# ---------------------------------------------------------------------------------------------------------------
# Our own .safetensors files.

def test_safetensors_round_trip_keeps_config_and_weights(tmp_path):
    net = perturbed(SMALL["adm-iddpm"])
    path = tmp_path / "net.safetensors"
    save_safetensors(SMALL["adm-iddpm"], net.state_dict(), path)
    config, state_dict = read_checkpoint(path)
    assert config == SMALL["adm-iddpm"]
    loaded = load_network(path)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(loaded(x, torch.tensor([0.5, 3.0])), net(x, torch.tensor([0.5, 3.0])))


def test_safetensors_without_config_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bare.safetensors"
    save_file({"model.map_layer0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(UnsafeCheckpointError, match="pspc convert"):
        load_network(path)


def test_non_finite_weights_are_refused_by_load_and_convert(tmp_path):
    state = perturbed(SMALL["ncsnpp-ve"]).state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    path = tmp_path / "nan.safetensors"
    save_safetensors(SMALL["ncsnpp-ve"], state, path)
    with pytest.raises(UnsafeCheckpointError, match=f"NaN or infinite weights \\({name}\\)"):
        load_network(path)
    with pytest.raises(UnsafeCheckpointError, match="NaN or infinite weights"):
        convert(path, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_truncated_safetensors_is_refused(tmp_path):
    path = tmp_path / "net.safetensors"
    save_safetensors(SMALL["ncsnpp-ve"], perturbed(SMALL["ncsnpp-ve"]).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafeCheckpointError):
        load_network(path)


# ---------------------------------------------------------------------------------------------------------------
# A tampered tensor-storage record: one line of our own, never torch's advice to load unsafely.

def storage_tampered(data: bytes, how: str) -> bytes:
    """`data` with the first tensor storage record changed: its storage class swapped for another global of the
    same length (pickle lengths stay valid), or its element count raised."""
    at = data.find(b"ctorch\nFloatStorage\n")
    if how == "global":
        return data[:at] + b"cposix\nsystem\n\n\n\n\n\n\n" + data[at + 20:]
    end = data.find(b"a.", at) + 2  # the key-list pickle ends here; the int64 element count follows
    count = int.from_bytes(data[end:end + 8], "little")
    return data[:end] + (count + 5).to_bytes(8, "little") + data[end + 8:]


@pytest.mark.parametrize("how, fragment", [("global", "refers to posix.system"), ("count", "is damaged")])
def test_tampered_storage_record_is_one_line_without_unsafe_advice(tmp_path, how, fragment):
    data = edm_pickle_bytes(perturbed(SMALL["ncsnpp-ve"]), SMALL["ncsnpp-ve"]["init_kwargs"])
    path = tmp_path / "tampered.pkl"
    path.write_bytes(storage_tampered(data, how))
    message = str(assert_refused(path, str(path), "tensor storage record", fragment))
    assert "\n" not in message
    assert "weights_only" not in message and "weights only" not in message.lower()
    assert "trust" not in message.lower()


# ---------------------------------------------------------------------------------------------------------------
# The embedded source: fingerprints and the shipped table.

TOY_V1 = '''"""A toy module (not EDM): what the comparison rules see."""
import math
from torch.nn.functional import silu


def helper(x, scale=2):
    """Doubles."""
    return silu(x) * scale


class Used:
    def forward(self, x):
        return helper(x) + math.pi


class Unused:
    width = 3
'''


def test_fingerprints_ignore_comments_layout_quotes_and_docstrings():
    cosmetic = ("# a comment\n'''Another docstring.'''\nimport math\nfrom torch.nn.functional import (silu)\n"
                "def helper(x,scale = 2):\n    return (silu(x)\n            * scale)  # note\n"
                "class Used:\n    '''Doc.'''\n    def forward(self,x): return helper(x)+math.pi\n"
                "class Unused:\n    width = (3)\n")
    assert edm_source.module_fingerprints(cosmetic) == edm_source.module_fingerprints(TOY_V1)
    changed = edm_source.module_fingerprints(TOY_V1.replace("scale=2", "scale=3"))["definitions"]
    original = edm_source.module_fingerprints(TOY_V1)["definitions"]
    assert [n for n in original if original[n] != changed[n]] == ["helper"]


def test_fingerprint_is_pinned_so_a_python_version_that_changes_it_fails_here():
    # The shipped table was computed with this normalisation; if a Python release dumps syntax trees differently,
    # this (and every real EDM pickle) would stop matching: this test names the cause.
    src = ("@decorate(1)\nclass A(B, metaclass=M):\n    x: int = 2\n    def f(self, *a, k=None, **kw):\n"
           "        return f'{a!r:>3}-{k}_{k}x{k}' + str(-1.5e3) + ''.join([y async for y in z] if k else ())\n")
    assert edm_source.module_fingerprints(src)["definitions"]["A"] == (
        "fd186e35aa0f38ee6615a285d6a14a4f19a36a7b65f4e684881beeaff0781799")


EDM_NAMES = ("np", "torch", "persistence", "silu", "weight_init", "Linear", "Conv2d", "GroupNorm", "AttentionOp",
             "UNetBlock", "PositionalEmbedding", "FourierEmbedding", "SongUNet", "DhariwalUNet", "VPPrecond",
             "VEPrecond", "iDDPMPrecond", "EDMPrecond")  # the top-level names of training/networks.py


def test_shipped_table_covers_every_networks_py_of_the_official_history():
    table = json.loads((Path(edm_source.__file__).parent / edm_source.TABLE_FILE).read_text())
    assert table["normalisation"] == edm_source.NORMALISATION
    assert table["repository"] == "https://github.com/NVlabs/edm" and table["ref"] == "main"
    assert table["head"].startswith("008a4e5")  # the history was walked up to this commit (2024-03-16)
    assert [v["commit"][:7] for v in table["versions"]] == ["0a2ff34", "b2a26c9"]  # the only two that touch it
    first, second = (v["definitions"] for v in table["versions"])
    for defs in (first, second):
        assert set(EDM_NAMES) <= set(defs)
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in defs.values())  # hashes only, no code
    assert [name for name in first if first[name] != second[name]] == ["Conv2d"]  # b2a26c9 fixed fused upsampling
    assert all(not v["statements"] for v in table["versions"])


@pytest.fixture()
def toy_versions(monkeypatch):
    """The official table replaced by one toy version (TOY_V1)."""
    versions = [{"commit": "toyv1aa", "date": "", "commits": [], **edm_source.module_fingerprints(TOY_V1)}]
    monkeypatch.setattr(edm_source, "official_versions", lambda: versions)
    return versions


@pytest.mark.parametrize("edit, problem", [
    (lambda s: s, None),
    (lambda s: s.replace("width = 3", "width = 4"), None),  # not used by the network: not compared
    (lambda s: s + "\nimport os\n", None),  # binds a name nothing used refers to
    (lambda s: s.replace("* scale", "* scale * 1.01"), "function helper differs from every official EDM version"),
    (lambda s: s.replace("from torch.nn.functional import silu", "from torch.nn.functional import gelu as silu"),
     "import silu differs"),
    (lambda s: s.replace("math.pi", "math.pi + extra(x)") + "\ndef extra(x):\n    return x\n",
     "class Used differs"),
    (lambda s: s + "\nmath.pi = 3\n", "the top-level code at line"),
    (lambda s: s.replace("class Used:", "class Renamed:"), "does not define class Used"),
    (lambda s: s + "\nclass Used:\n    pass\n", "binds Used 2 times"),
    (lambda s: s + "\ndef helper(x):\n    return x\n", "binds helper 2 times"),
    (lambda s: "def (:", "not Python that parses"),
])
def test_compared_are_the_used_classes_what_they_refer_to_and_top_level_code(toy_versions, edit, problem):
    verdict = edm_source.check_network_source({edit(TOY_V1): ["Used"]})
    assert verdict.problem is None if problem is None else problem in verdict.problem
    assert verdict.versions == (("toyv1aa",) if problem is None else ())


def test_every_compared_definition_must_come_from_one_version(toy_versions):
    v2 = TOY_V1.replace("* scale", "* scale * 2").replace("+ math.pi", "- math.pi")
    toy_versions.append({"commit": "toyv2bb", "date": "", "commits": [], **edm_source.module_fingerprints(v2)})
    assert edm_source.check_network_source({v2: ["Used"]}).versions == ("toyv2bb",)
    mixed = TOY_V1.replace("+ math.pi", "- math.pi")  # helper of v1, Used of v2
    assert "a mix of versions" in edm_source.check_network_source({mixed: ["Used"]}).problem


# ---------------------------------------------------------------------------------------------------------------
# The maintainer script regenerates the table from a checkout (here a toy repository: no EDM code in the tests).

def test_fingerprint_script_walks_the_official_branch_and_merges_cosmetic_versions(tmp_path):
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "edm_fingerprints.py"
    spec = importlib.util.spec_from_file_location("edm_fingerprints", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    repo = tmp_path / "edm"
    (repo / "training").mkdir(parents=True)

    def git(*args):
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t"}
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                              env=env).stdout.strip()

    git("init", "-q", "-b", "main")
    commits = []
    for text in (TOY_V1, "# reformatted\n" + TOY_V1, TOY_V1.replace("* scale", "* scale * 2")):
        (repo / "training" / "networks.py").write_text(text)
        git("add", "-A")
        git("commit", "-q", "-m", "step")
        commits.append(git("rev-parse", "HEAD"))
    git("checkout", "-q", "-b", "fork")  # a fork's edit: not on main, not official
    (repo / "training" / "networks.py").write_text(TOY_V1.replace("width = 3", "width = 5"))
    git("commit", "-q", "-am", "fork")
    out = tmp_path / "table.json"
    assert module.main([str(repo), "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    assert table["head"] == commits[2]
    assert [v["commits"] for v in table["versions"]] == [commits[:2], commits[2:]]
    assert table["versions"][0]["definitions"] == edm_source.module_fingerprints(TOY_V1)["definitions"]
    assert module.main([str(repo), "--out", str(out), "--check"]) == 0
    assert module.main([str(repo), "--out", str(out), "--check", "--ref", "fork"]) == 1


# ---------------------------------------------------------------------------------------------------------------
# Pickles saved from a modified EDM: refused in one line naming the definition, loaded when allowed.

def edited_stand_in(name: str, body: str = "    scale = 2") -> str:
    return STAND_IN_SRC.replace(f"class {name}:\n    pass\n", f"class {name}:\n{body}\n")


def test_stand_in_with_cosmetic_edits_loads(tmp_path):
    path = tmp_path / "net.pkl"
    src = "# saved on another machine\n" + STAND_IN_SRC.replace("class UNetBlock:\n    pass",
                                                                 "class UNetBlock:  # the block\n    '''Doc.'''\n\n    pass")
    write_edm_pickle(path, SMALL["ddpmpp-edm-cond"], module_src=src)
    assert load_network(path).img_resolution == 16


@pytest.mark.parametrize("name", sorted(SMALL))
def test_pickle_with_an_edited_class_is_refused_naming_it_and_loads_when_allowed(tmp_path, name):
    path = tmp_path / "modified.pkl"
    net = write_edm_pickle(path, SMALL[name], module_src=edited_stand_in("UNetBlock"))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_network(path)
    message = str(info.value)
    assert "\n" not in message
    assert message == (f"{path} was saved from a modified EDM: class UNetBlock differs from every official EDM "
                       "version (NVlabs/edm 0a2ff34, b2a26c9, standin), and pspc computes official EDM; to load it "
                       "as official EDM anyway, pass -p allow_modified_source=true (pspc convert: --allow-modified-source)")
    assert "exec" not in message and "trust" not in message
    loaded = load_network(path, allow_modified_source=True)
    x = torch.randn(2, net.img_channels, 16, 16)
    assert torch.equal(loaded(x, torch.tensor([0.3, 7.0])), net(x, torch.tensor([0.3, 7.0])))


def test_edit_in_a_class_the_network_does_not_use_is_ignored(tmp_path):
    path = tmp_path / "net.pkl"
    write_edm_pickle(path, SMALL["ncsnpp-ve"], module_src=edited_stand_in("DhariwalUNet"))  # a SongUNet network
    assert load_network(path).img_resolution == 16
    write_edm_pickle(path, SMALL["adm-iddpm"], module_src=edited_stand_in("DhariwalUNet"))
    with pytest.raises(UnsafeCheckpointError, match="class DhariwalUNet differs"):
        load_network(path)


def test_network_denoiser_takes_allow_modified_source(tmp_path):
    from pspc_core import create_denoiser

    path = tmp_path / "modified.pkl"
    write_edm_pickle(path, SMALL["ncsnpp-ve"], module_src=edited_stand_in("SongUNet"))
    with pytest.raises(UnsafeCheckpointError, match="class SongUNet differs"):
        create_denoiser("network", checkpoint=str(path))
    den = create_denoiser("network", checkpoint=str(path), allow_modified_source="true")
    assert den.resolution == 16


def test_convert_refuses_a_modified_source_and_records_an_allowed_one(tmp_path):
    from safetensors import safe_open

    pkl, out = tmp_path / "modified.pkl", tmp_path / "net.safetensors"
    net = write_edm_pickle(pkl, SMALL["skip-vp"], module_src=edited_stand_in("Conv2d"))
    with pytest.raises(UnsafeCheckpointError, match="class Conv2d differs"):
        convert(pkl, out)
    assert not out.exists()
    convert(pkl, out, allow_modified_source=True)
    with safe_open(out, "pt") as f:
        source = json.loads(f.metadata()["pspc_edm_source"])
    assert source["official"] is False and "class Conv2d differs" in source["problem"]
    with pytest.raises(UnsafeCheckpointError) as info:  # the verdict travels with the converted file
        load_network(out)
    assert str(info.value).startswith(f"{out} was converted from a network saved from a modified EDM: ")
    assert "class Conv2d differs" in str(info.value) and "allow_modified_source=true" in str(info.value)
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(load_network(out, allow_modified_source=True)(x, torch.tensor([0.3, 7.0])),
                       net(x, torch.tensor([0.3, 7.0])))


def test_convert_of_an_official_source_records_the_versions_it_matches(tmp_path):
    from safetensors import safe_open

    pkl, out = tmp_path / "net.pkl", tmp_path / "net.safetensors"
    write_edm_pickle(pkl, SMALL["ncsnpp-ve"])
    convert(pkl, out)
    with safe_open(out, "pt") as f:
        assert json.loads(f.metadata()["pspc_edm_source"]) == {"official": True, "versions": ["standin"]}
    assert load_network(out).img_resolution == 16


def test_cli_refuses_a_modified_source_in_one_line_and_loads_it_when_allowed(capsys, tmp_path):
    import numpy as np
    from helpers import assert_one_line_error, pspc

    pkl = tmp_path / "modified.pkl"
    write_edm_pickle(pkl, SMALL["ncsnpp-ve"], module_src=edited_stand_in("UNetBlock"))
    np.save(tmp_path / "z.npy", torch.randn(18, 1, 3, 16, 16).numpy())
    args = ["denoise", "-d", "network", "-p", f"checkpoint={pkl}", "--t_idx", 10, "--z", tmp_path / "z.npy",
            "--outdir", tmp_path / "out", "--quiet", "--device", "cpu"]
    code, _, err = pspc(capsys, *args)
    assert_one_line_error(code, err, "saved from a modified EDM", "class UNetBlock", "allow_modified_source=true")
    code, _, err = pspc(capsys, *args, "-p", "allow_modified_source=true")
    assert code == 0, err
    out = tmp_path / "net.safetensors"
    code, _, err = pspc(capsys, "convert", pkl, out)
    assert_one_line_error(code, err, "saved from a modified EDM", "--allow-modified-source")
    assert not out.exists()
    code, _, err = pspc(capsys, "convert", pkl, out, "--allow_modified_source")  # the spelling the paper's flags use
    assert code == 0 and out.exists(), err


def test_safetensors_with_malformed_source_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "net.safetensors"
    save_safetensors(SMALL["ncsnpp-ve"], perturbed(SMALL["ncsnpp-ve"]).state_dict(), path)
    weights = read_checkpoint(path)[1]
    config = json.dumps(SMALL["ncsnpp-ve"])
    save_file(dict(weights), path, metadata={"pspc_config": config, "pspc_edm_source": "official"})
    with pytest.raises(UnsafeCheckpointError, match="pspc_edm_source"):
        load_network(path)
