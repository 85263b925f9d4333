"""`pspc calibrate`: a known optimum is recovered exactly, a calibrated schedule is never worse than the default on
its own calibration latents, the presets it writes work as they are, and compare keeps evaluation apart."""

import tomllib

import numpy as np
import pytest

from helpers import assert_one_line_error, pspc

SMALL = ["--data", "builtin:shapes:60", "--no-xflip", "-q", "--device", "cpu"]
GRID = ["--n-steps", "4", "--t-min", "0.05", "--t-max", "2"]


def _registry(tmp_path, denoiser: str, params: str):
    """A registry file holding the preset `truth`: `denoiser` with `params` (a TOML inline table's body)."""
    path = tmp_path / "truth.toml"
    path.write_text(f'[presets.truth]\ndenoiser = "{denoiser}"\nparams = {{ {params} }}\n')
    return path


def _calibrate(capsys, tmp_path, *args):
    """`pspc calibrate ARGS` into tmp_path/cal on the small grid: (that folder, the presets it wrote)."""
    out = tmp_path / "cal"
    code, _, err = pspc(capsys, "calibrate", *args, "-o", out, *GRID, *SMALL)
    assert code == 0, err
    return out, tomllib.loads((out / "calibrated.toml").read_text())["presets"]


@pytest.fixture
def truth(tmp_path):
    return _registry(tmp_path, "pspc_sq", "patch_sizes = [5, 3, 2, 4], t_min = 0.05, t_max = 2.0")


@pytest.mark.parametrize("metric", ["mse", "cosine"])
def test_a_reference_that_is_pspc_sq_with_a_schedule_is_recovered_exactly(capsys, tmp_path, truth, metric):
    out, presets = _calibrate(capsys, tmp_path, "-r", "truth", "-d", "pspc_sq", "--registry", truth, "--metric",
                              metric, "--n-samples", 4, "--batch", 2)
    preset = presets["pspc_sq_calibrated"]
    assert preset["params"]["patch_sizes"] == [5, 3, 2, 4] and len(preset["params"]["t_grid"]) == 4
    assert preset["calibration"]["seeds"] == [100000, 100004] and preset["calibration"]["metric"] == metric
    assert (out / "calibration_pspc_sq.png").exists() and not (out / ".pspc-work").exists()
    rows = (out / "calibration.csv").read_text().splitlines()
    assert rows[0] == f"denoiser,t_idx,t,candidate,{metric},chosen" and len(rows) == 1 + 4 * 32


def test_the_calibrated_schedule_is_never_worse_than_the_default_on_its_calibration_latents(capsys, tmp_path):
    from pspc_core import create_denoiser, edm_schedule, load_dataset
    from pspc_core.latents import forward_process

    _, presets = _calibrate(capsys, tmp_path, "-r", "gaussian", "-d", "pspc_sq", "--n-samples", 3, "--batch", 3)
    preset = presets["pspc_sq_calibrated"]
    data = load_dataset("builtin:shapes:60")
    reference = create_denoiser("gaussian", dataset=data)
    calibrated = create_denoiser("pspc_sq", dataset=data, **preset["params"])
    default = create_denoiser("pspc_sq", dataset=data)
    for t in edm_schedule(4, 0.05, 2.0).tolist():
        z = forward_process(data, range(100000, 100003), t)
        ref = reference(z, t).double()
        errors = [float(((den(z, t).double() - ref) ** 2).mean()) for den in (calibrated, default)]
        assert errors[0] <= errors[1] * (1 + 1e-9), (t, errors)


def test_compare_uses_a_calibrated_preset_as_is_but_never_on_its_calibration_latents(capsys, tmp_path, truth):
    out, _ = _calibrate(capsys, tmp_path, "-r", "truth", "-d", "pspc_sq", "--registry", truth, "--n-samples", 2,
                        "--seed", 5, "--candidates", "2,3,4,5")
    presets = out / "calibrated.toml"
    args = ["compare", "-r", "gaussian", "--preset", "pspc_sq_calibrated", "-d", "pspc_sq", "--registry", presets,
            "--n-samples", 3, "-o", tmp_path / "cmp", *GRID, *SMALL]
    code, _, err = pspc(capsys, *args, "--seed", 6)
    assert_one_line_error(code, err, "calibrated on the latents of seeds 5..6", "choose --seed outside")
    code, stdout, err = pspc(capsys, *args, "--seed", 7)
    assert code == 0 and "pspc_sq_calibrated" in stdout, err


@pytest.mark.parametrize("args, fragment", [
    (["-d", "gaussian"], "'gaussian' declares no scale to calibrate"),
    ([], "name the denoisers to calibrate with -d"),
    (["-d", "pspc_sq", "--candidates", "0,3"], "patch size 0 does not fit"),
    (["-d", "pspc_sq", "--candidates", "x"], "'patch_sizes' expects list[int]"),
    (["-d", "pspc_sq,empirical", "--candidates", "3"], "empirical"),
    (["-d", "pspc_sq", "--metric", "r2"], "Invalid value for '--metric'"),
])
def test_bad_calibrations_are_one_line(capsys, tmp_path, args, fragment):
    code, _, err = pspc(capsys, "calibrate", "-r", "gaussian", *args, "-o", tmp_path / "o", *GRID, *SMALL)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "o").exists() or not any(p.is_file() for p in (tmp_path / "o").rglob("*"))


def test_compare_samples_scores_every_denoiser_against_the_reference_samples(capsys, tmp_path):
    out = tmp_path / "s"
    code, stdout, err = pspc(capsys, "compare", "--samples", "-r", "gaussian", "-d", "gaussian,empirical",
                             "--n-samples", 3, "--n-steps", 5, "-o", out, *SMALL)
    assert code == 0, err
    lines = {line.split()[0]: line.split()[-4:] for line in stdout.splitlines()[2:5]}
    assert float(lines["gaussian"][0]) == 0 and float(lines["gaussian"][1]) == 1  # as the reference: MSE 0, r² 1
    assert int(lines["empirical"][3]) == 3  # the empirical denoiser's samples are training images
    rows = (out / "samples.csv").read_text().splitlines()
    assert rows[0] == "denoiser,sample,mse,r2,nearest_distance" and len(rows) == 1 + 3 * 3
    assert (out / "samples.png").exists() and np.load(out / "empirical_samples.npy").shape == (3, 3, 32, 32)
    assert not (out / ".pspc-work").exists()



def test_flex_masses_are_calibrated_on_a_grid_of_their_own(capsys, tmp_path):
    heatmaps = tmp_path / "h.npy"
    np.save(heatmaps, np.random.default_rng(0).random((3, 32, 32, 32, 32), dtype=np.float32))
    _, presets = _calibrate(capsys, tmp_path, "-r", "gaussian", "-d", "pspc_flex", "-p",
                            f"pspc_flex.heatmaps={heatmaps}", "--candidates", "0.2,0.6,1", "--n-samples", 2)
    preset = presets["pspc_flex_calibrated"]
    assert len(preset["params"]["thresholds"]) == 4 and set(preset["params"]["thresholds"]) <= {0.2, 0.6, 1.0}
    assert preset["params"]["heatmaps"] == str(heatmaps)


def test_pca_locality_thresholds_are_recovered_as_a_schedule(capsys, tmp_path):
    registry = _registry(tmp_path, "pca_locality", "threshold = [1.0, 0.1, 0.02, 0.3], t_min = 0.05, t_max = 2.0")
    out, presets = _calibrate(capsys, tmp_path, "-r", "truth", "-d", "pca_locality", "--registry", registry,
                              "--candidates", "0.02,0.1,0.3,1", "--n-samples", 2)
    preset = presets["pca_locality_calibrated"]
    rows = [line.split(",") for line in (out / "calibration.csv").read_text().splitlines()[1:]]
    zero = {(int(r[1]), float(r[3])) for r in rows if float(r[4]) == 0}  # (t index, τ) giving the truth's outputs
    truth = [1.0, 0.1, 0.02, 0.3]
    assert all((k, tau) in zero for k, tau in enumerate(truth))  # the truth is an optimum at every t ...
    assert all((k, tau) in zero for k, tau in enumerate(preset["params"]["threshold"]))  # ... and so is the fit
    unique = [k for k in range(4) if sum(1 for kk, _ in zero if kk == k) == 1]
    assert unique and all(preset["params"]["threshold"][k] == truth[k] for k in unique)


def test_els_patch_sizes_are_recovered_exactly(capsys, tmp_path):
    registry = _registry(tmp_path, "els", "patch_sizes = [7, 3, 1, 5], t_min = 0.05, t_max = 2.0")
    _, presets = _calibrate(capsys, tmp_path, "-r", "truth", "-d", "els", "--registry", registry,
                            "--candidates", "1,3,5,7", "--n-samples", 2)
    assert presets["els_calibrated"]["params"]["patch_sizes"] == [7, 3, 1, 5]
