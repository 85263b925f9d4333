"""pspc_sq / pspc_flex as plugins: registration, light hooks, presets, one-line errors, and the CLI."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from pspc_core import ParameterError, ShapeError, create_denoiser, get_preset, list_denoisers
from pspc_patch.paper_schedules import PAPER_CIFAR10_PATCH_SIZES, PAPER_CIFAR10_THRESHOLDS


def test_both_denoisers_are_registered_through_the_entry_point_group():
    specs = {s.name: s for s in list_denoisers()}
    assert specs["pspc_sq"].plugin == specs["pspc_flex"].plugin == "patch"
    assert {"dataset", "patch_sizes", "t_min", "t_max", "rho", "chunk_size"} <= {p.name for p in specs["pspc_sq"].params}
    assert {"dataset", "heatmaps", "thresholds", "chunk_size"} <= {p.name for p in specs["pspc_flex"].params}


def test_presets_hold_the_papers_cifar10_settings():
    sq, flex = get_preset("pspc_sq_cifar10"), get_preset("pspc_flex_cifar10")
    assert (sq.denoiser, flex.denoiser) == ("pspc_sq", "pspc_flex")
    assert sq.params["patch_sizes"] == list(PAPER_CIFAR10_PATCH_SIZES)
    assert flex.params["thresholds"] == list(PAPER_CIFAR10_THRESHOLDS)


def test_preset_parameters_build_a_denoiser():
    from pspc_core import Dataset

    data = Dataset(torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8))
    den = create_denoiser("pspc_sq", dataset=data, **get_preset("pspc_sq_cifar10").params)
    assert [den.patch_size(t) for t in (80.0, 5.3, 0.002)] == [32, 23, 3]


@pytest.mark.parametrize("params,words", [
    (dict(patch_sizes=[4, 9]), "does not fit 8x8"),
    (dict(patch_sizes=[4, 0]), "does not fit 8x8"),
    (dict(patch_sizes=[]), "empty"),
    (dict(t_min=1.0, t_max=0.5), "t_min < t_max"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(patch_sizes="3,x"), "list[int]"),
])
def test_bad_square_parameters_are_one_line_errors(tiny_dataset, params, words):
    with pytest.raises(ParameterError) as info:
        create_denoiser("pspc_sq", dataset=tiny_dataset, **params)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_latents_of_another_resolution_are_a_shape_error(tiny_dataset):
    den = create_denoiser("pspc_sq", dataset=tiny_dataset, patch_sizes=[3])
    with pytest.raises(ShapeError, match="expects 3x8x8"):
        den(torch.zeros(2, 3, 16, 16), 1.0)


def test_non_positive_noise_level_is_an_error(tiny_dataset):
    den = create_denoiser("pspc_sq", dataset=tiny_dataset, patch_sizes=[3])
    with pytest.raises(ParameterError, match="positive"):
        den(torch.zeros(2, 3, 8, 8), torch.tensor([1.0, 0.0]))


def test_cli_samples_with_both_denoisers(shared, tmp_path):
    data = str(shared / "data" / "cifar10-train-200-16.zip")
    heatmaps = str(shared / "reference" / "pspc" / "heatmaps16.npy")
    runs = [["--denoiser", "pspc_sq", "--n-steps", "7"],
            ["--preset", "pspc_flex_cifar10", "-p", f"heatmaps={heatmaps}", "--n-steps", "5"]]
    for i, extra in enumerate(runs):
        out = tmp_path / str(i)
        cmd = [sys.executable, "-m", "pspc_cli", "sample", "--data", data, "--n-samples", "2", "--outdir", str(out), "-q", *extra]
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        samples = np.load(next(out.glob("*_samples.npy")))
        assert samples.shape == (2, 3, 16, 16) and np.isfinite(samples).all()


def test_cli_reports_bad_heatmaps_in_one_line(shared, tmp_path):
    np.save(tmp_path / "h.npy", np.ones((18, 8, 8, 8, 8), np.float32))
    cmd = [sys.executable, "-m", "pspc_cli", "sample", "--data", str(shared / "data" / "cifar10-train-200-16.zip"),
           "--denoiser", "pspc_flex", "-p", f"heatmaps={tmp_path / 'h.npy'}", "--outdir", str(tmp_path / "o"), "-q"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 2
    assert "heatmaps have shape" in result.stderr and len(result.stderr.strip().splitlines()) == 1
