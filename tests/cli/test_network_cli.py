"""`pspc convert`, `pspc show network`, and `pspc denoise` / `pspc sample` with a network checkpoint."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import torch

from helpers import assert_one_line_error, pspc
from pspc_core import create_denoiser
from pspc_network import read_checkpoint
from edm_pickles import SMALL, write_edm_pickle

TINY32 = {"class_name": "EDMPrecond", "init_kwargs": dict(
    model_type="SongUNet", model_channels=8, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[16],
    img_resolution=32, img_channels=3, label_dim=0)}
QUIET = ["--quiet", "--device", "cpu"]



def test_convert_writes_an_equivalent_safetensors(capsys, tmp_path):
    pkl, out = tmp_path / "net.pkl", tmp_path / "sub" / "net.safetensors"
    write_edm_pickle(pkl, SMALL["ddpmpp-edm-cond"])
    code, stdout, err = pspc(capsys, "convert", pkl, out)
    assert code == 0, err
    assert "EDMPrecond + SongUNet, 3x16x16, 4 classes" in stdout
    config, weights = read_checkpoint(out)
    assert config == SMALL["ddpmpp-edm-cond"]  # the recorded kwargs, exactly
    _, original = read_checkpoint(pkl)
    assert set(weights) == set(original) and all(torch.equal(weights[k], original[k]) for k in original)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([0.1, 5.0])
    from_pkl = create_denoiser("network", checkpoint=str(pkl), class_label="2")
    from_st = create_denoiser("network", checkpoint=str(out), class_label="2")
    assert torch.equal(from_pkl(x, t), from_st(x, t))
    assert [p.name for p in out.parent.iterdir()] == ["net.safetensors"]  # no temporary left behind


def test_convert_refuses_an_unsafe_pickle_and_writes_nothing(capsys, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    pkl, out = tmp_path / "evil.pkl", tmp_path / "evil.safetensors"
    pkl.write_bytes(pickle.dumps({"ema": Payload()}))
    code, _, err = pspc(capsys, "convert", pkl, out)
    assert_one_line_error(code, err, "not a plain EDM checkpoint", "system")
    assert not out.exists() and not marker.exists()
    assert list(tmp_path.iterdir()) == [pkl]


def test_convert_missing_input_is_a_one_line_error(capsys, tmp_path):
    code, _, err = pspc(capsys, "convert", tmp_path / "nope.pkl", tmp_path / "out.safetensors")
    assert_one_line_error(code, err, "does not exist")


def test_show_network_documents_its_parameters(capsys):
    code, out, _ = pspc(capsys, "show", "network")
    assert code == 0
    for name in ("checkpoint", "class_label", "force_fp32", "random", "none"):
        assert name in out


def test_denoise_with_a_network_checkpoint(capsys, tmp_path):
    pkl = tmp_path / "net.pkl"
    net = write_edm_pickle(pkl, TINY32)
    z = torch.randn(18, 2, 3, 32, 32)
    np.save(tmp_path / "z.npy", z.numpy())
    code, _, err = pspc(capsys, "denoise", "--denoiser", "network", "-p", f"checkpoint={pkl}", "--t_idx", 10,
                        "--z", tmp_path / "z.npy", "--outdir", tmp_path / "out", *QUIET)
    assert code == 0, err
    got = np.load(tmp_path / "out" / "network_outputs_t_10_of_18.npy")
    from pspc_core import edm_schedule

    t = float(edm_schedule(18)[10])
    with torch.no_grad():
        want = net(z[10], torch.full((2,), t)).numpy()
    assert np.allclose(got, want, rtol=0, atol=1e-5 * (1 + t))


def test_sample_with_network_pkl_flag(capsys, tmp_path):
    pkl = tmp_path / "net.pkl"
    write_edm_pickle(pkl, TINY32)
    code, _, err = pspc(capsys, "sample", "--network_pkl", pkl, "--n_samples", 2, "--n_steps", 3,
                        "--solver", "heun", "--outdir", tmp_path, *QUIET)
    assert code == 0, err
    samples = np.load(tmp_path / "network_samples.npy")
    assert samples.shape == (2, 3, 32, 32) and np.isfinite(samples).all()


def test_network_and_data_of_different_sizes_fail_before_any_work(capsys, tmp_path):
    pkl = tmp_path / "net16.pkl"
    write_edm_pickle(pkl, SMALL["ncsnpp-ve"])  # 16x16; builtin shapes are 32x32
    code, _, err = pspc(capsys, "denoise", "--network_pkl", pkl, "--data", "builtin:shapes:20", "--t_idx", 10,
                        "--outdir", tmp_path / "out", *QUIET)
    assert_one_line_error(code, err, "3x16x16", "3x32x32")
    assert not (tmp_path / "out" / "network_outputs_t_10_of_18.npy").exists()


def test_listing_network_imports_no_torch():
    code = "import sys; import pspc_network.hooks, pspc_network; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_network_on_the_builtin_data_defaults_to_the_shipped_network_and_elsewhere_asks_for_one():
    import pytest

    from pspc_core import ParameterError, create_denoiser
    from pspc_network.shipped import CHECKPOINT

    den = create_denoiser("network", data="builtin:shapes")
    assert (den.channels, den.resolution) == (3, 32) and CHECKPOINT.exists()
    with pytest.raises(ParameterError, match="network needs a checkpoint"):
        create_denoiser("network", data="builtin:shapes:50")