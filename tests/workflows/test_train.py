"""`pspc train`: the EDM loss, the EMA schedule, checkpoints the network plugin loads, and exact resumption."""

import math

import numpy as np
import pytest
import torch
from safetensors import safe_open

from pspc_train.ema import ema_beta
from pspc_train.loop import TrainSettings, train
from pspc_train.loss import edm_loss

TINY = dict(model_channels=8, channel_mult=[1, 2], attn_resolutions=[4], num_blocks=1, batch=8, dropout=0.0)


@pytest.fixture
def tiny_data(tmp_path):
    path = tmp_path / "tiny.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (24, 3, 8, 8), dtype=np.uint8))
    return str(path)


def test_edm_loss_weights_the_squared_error_by_lambda_sigma():
    class Identity(torch.nn.Module):  # D(x + n; σ) = x + n, so loss = λ(σ)·n² = λ(σ)·σ²·ε²
        def forward(self, x, sigma):
            return x

    x = torch.zeros(4000, 1, 1, 1)
    loss = edm_loss(Identity(), x, torch.Generator().manual_seed(0), sigma_data=0.5)
    # E[λ(σ) σ² ε²] = E[(σ² + σ_d²) / σ_d²] with ln σ ~ N(-1.2, 1.2²): E[σ²] = exp(2·(-1.2) + 2·1.2²)
    expected = (math.exp(2 * -1.2 + 2 * 1.2 ** 2) + 0.25) / 0.25
    assert abs(float(loss.mean()) / expected - 1) < 0.15


def test_ema_half_life_ramps_up_with_images_seen():
    assert ema_beta(64, 1000, halflife_kimg=500, rampup_ratio=0.05) == pytest.approx(0.5 ** (64 / 50))
    assert ema_beta(64, 10**9, halflife_kimg=500, rampup_ratio=0.05) == pytest.approx(0.5 ** (64 / 500_000))


def test_checkpoint_loads_in_the_network_plugin_and_denoises(tiny_data, tmp_path):
    from pspc_core import create_denoiser

    result = train(TrainSettings(data=tiny_data, duration_kimg=0.032, snapshot_kimg=0.016, float16=True, **TINY),
                   tmp_path / "run", progress=False, report=lambda m: None)
    with safe_open(str(result["network"]), "pt") as f:
        assert '"class_name": "EDMPrecond"' in f.metadata()["pspc_config"]
        keys = list(f.keys())
        assert "model.enc.8x8_conv.weight" in keys and f.get_tensor("model.enc.8x8_conv.weight").dtype == torch.float16
    den = create_denoiser("network", checkpoint=str(result["network"]))
    out = den(torch.zeros(2, 3, 8, 8), torch.full((2,), 1.0))
    assert out.shape == (2, 3, 8, 8) and torch.isfinite(out).all()
    log = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    assert log[0] == "step,kimg,loss,lr,seconds" and len(log) == 3


def test_resumed_run_equals_an_uninterrupted_one(tiny_data, tmp_path):
    quiet = dict(progress=False, report=lambda m: None)
    s = dict(data=tiny_data, snapshot_kimg=0.016, lr_rampup_kimg=0.01, **TINY)
    train(TrainSettings(duration_kimg=0.016, **s), tmp_path / "a", **quiet)  # 2 steps, then "interrupted"
    resumed = train(TrainSettings(duration_kimg=0.032, **s), tmp_path / "a", **quiet)  # 2 more
    straight = train(TrainSettings(duration_kimg=0.032, **s), tmp_path / "b", **quiet)
    assert resumed["steps"] == straight["steps"] == 4
    with safe_open(str(resumed["network"]), "pt") as fa, safe_open(str(straight["network"]), "pt") as fb:
        for key in fa.keys():
            assert torch.equal(fa.get_tensor(key), fb.get_tensor(key)), key
    assert (tmp_path / "a" / "loss.csv").read_text().count("\n") == 3  # header + steps 2 and 4, no duplicates


def test_resuming_with_other_settings_is_refused(tiny_data, tmp_path):
    from pspc_core.errors import ParameterError

    quiet = dict(progress=False, report=lambda m: None)
    train(TrainSettings(data=tiny_data, duration_kimg=0.008, **TINY), tmp_path / "a", **quiet)
    with pytest.raises(ParameterError, match="lr"):
        train(TrainSettings(data=tiny_data, duration_kimg=0.016, **dict(TINY, lr=5e-4)), tmp_path / "a", **quiet)


def test_resuming_with_another_architecture_is_refused_before_loading(tiny_data, tmp_path):
    from pspc_core.errors import ParameterError

    quiet = dict(progress=False, report=lambda m: None)
    train(TrainSettings(data=tiny_data, duration_kimg=0.008, **TINY), tmp_path / "a", **quiet)
    for key, value in [("arch", "ncsnpp"), ("model_channels", 16), ("channel_mult", [1, 1]), ("num_blocks", 2),
                       ("attn_resolutions", [])]:
        with pytest.raises(ParameterError, match=f"holds a run with {key}="):  # not a state_dict size mismatch
            train(TrainSettings(data=tiny_data, duration_kimg=0.016, **dict(TINY, **{key: value})), tmp_path / "a", **quiet)


def _cli(capsys, tmp_path, *args):
    """Run `pspc train` on 4 built-in images into tmp_path/x; returns (exit code, stderr lines)."""
    from pspc_cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "-o", str(tmp_path / "x"), "--data", "builtin:shapes:4", "-q", *args])
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("args", [["--channel_mult", "1,two"], ["--channel-mult", "0"], ["--channel-mult", "-1"],
                                  ["--channel-mult", ""], ["--lr", "inf"], ["--p-mean", "nan"], ["--p-std", "inf"],
                                  ["--duration-kimg", "inf"], ["--snapshot-kimg", "inf"], ["--attn-resolutions", "7"]])
def test_cli_bad_option_is_one_line(capsys, tmp_path, args):
    code, err = _cli(capsys, tmp_path, *args)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {args[0].replace('_', '-')} "), err
    assert not (tmp_path / "x").exists()


def test_cli_diverging_run_stops_without_a_nan_network(capsys, tmp_path):
    tiny = ["--model-channels", "4", "--channel-mult", "1,1", "--attn-resolutions", "", "--batch", "4"]
    code, err = _cli(capsys, tmp_path, *tiny, "--p-mean", "1e6", "--duration-kimg", "0.008")  # σ = e^1e6 = inf
    assert code == 2 and err[-1].startswith("error: training diverged at step 1 ") and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()
    code, err = _cli(capsys, tmp_path, *tiny, "--lr", "1e10", "--duration-kimg", "0.04", "--snapshot-kimg", "0.004")
    assert code == 2 and err[-1].startswith("error: training diverged at step") and "--lr" in err[-1], err
    assert not err[-1].startswith("error: training diverged at step 1 ") and "Traceback" not in err
    assert "nan" not in (tmp_path / "x" / "loss.csv").read_text()  # the snapshots before it stay, and are finite
    with safe_open(str(tmp_path / "x" / "network.safetensors"), "pt") as f:
        assert all(torch.isfinite(f.get_tensor(k)).all() for k in f.keys())
