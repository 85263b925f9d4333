"""The `pspc` command line: listing, denoise, sample, dataset, and one-line errors for bad input."""

import subprocess
import sys

import numpy as np
import pytest

from helpers import assert_one_line_error, pspc

SMALL = ["--data", "builtin:shapes:40", "--quiet", "--device", "cpu"]



def test_list_show_plugins(capsys):
    code, out, _ = pspc(capsys, "list")
    assert code == 0 and "empirical" in out and "gaussian" in out
    code, out, _ = pspc(capsys, "show", "gaussian")
    assert code == 0 and "rank" in out and "int" in out
    code, out, _ = pspc(capsys, "plugins")
    assert code == 0 and "register_denoisers" in out


def test_list_marks_a_preset_whose_denoiser_is_not_installed(capsys, tmp_path):
    (tmp_path / "r.toml").write_text('[presets.ghost]\ndenoiser = "nosuch"\nsummary = "a ghost"\n')
    code, out, _ = pspc(capsys, "list", "--registry", tmp_path / "r.toml")
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("ghost")][0].endswith("(unusable: no installed "
                                                                                        "plugin has this denoiser)")


def test_help_is_fast_and_imports_no_torch():
    code = "import sys; from pspc_cli.main import app; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    out = subprocess.run([sys.executable, "-m", "pspc_cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "sample" in out.stdout


def test_sample_writes_samples_grid_and_nearest_report(capsys, tmp_path):
    code, out, _ = pspc(capsys, "sample", "--outdir", tmp_path, "--n_samples", 3, "--n-steps", 6, "--save-nearest", *SMALL)
    assert code == 0
    samples = np.load(tmp_path / "empirical_samples.npy")
    assert samples.shape == (3, 3, 32, 32)
    assert (tmp_path / "empirical_samples.png").exists() and (tmp_path / "empirical_nearest.png").exists()
    assert "3 of 3 samples are copies of training images" in out
    assert not (tmp_path / ".pspc-work").exists()


def test_sample_results_do_not_depend_on_batch_size(capsys, tmp_path):
    args = ["sample", "--n_samples", 3, "--n_steps", 4, "-d", "gaussian", "-p", "rank=8", *SMALL]
    pspc(capsys, *args, "--outdir", tmp_path / "a", "--batch", 3)
    pspc(capsys, *args, "--outdir", tmp_path / "b", "--batch", 1)
    a, b = (np.load(tmp_path / d / "gaussian_samples.npy") for d in "ab")
    assert np.array_equal(a, b)


def test_denoise_forward_process_and_z_file(capsys, tmp_path):
    code, _, _ = pspc(capsys, "denoise", "--outdir", tmp_path, "--t_idx", 17, "--n_samples", 4, *SMALL)
    assert code == 0
    out = np.load(tmp_path / "empirical_outputs_t_17_of_18.npy")
    assert out.shape == (4, 3, 32, 32)
    z = np.random.default_rng(0).standard_normal((5, 2, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    code, _, _ = pspc(capsys, "denoise", "--outdir", tmp_path, "--z", tmp_path / "z.npy", "--n_steps", 5,
                      "--t-idx", 1, "-d", "gaussian", *SMALL)
    assert code == 0 and np.load(tmp_path / "gaussian_outputs_t_01_of_05.npy").shape == (2, 3, 32, 32)
    assert (tmp_path / "gaussian_outputs_t_01_of_05.png").exists()


@pytest.mark.parametrize("args, match", [
    (["sample", "--data", "/no/such.zip"], "does not exist"),
    (["sample", "-d", "empiricl"], "did you mean 'empirical'"),
    (["sample", "-p", "chunk_size=abc"], "'chunk_size' expects int"),
    (["sample", "-p", "nokey"], "KEY=VALUE"),
    (["sample", "-p", "bogus=1"], "no parameter 'bogus'"),
    (["sample", "--preset", "nope"], "unknown preset"),
    (["denoise", "--t_idx", 18], "outside the 18-point grid"),
    (["denoise", "--z", "/no/z.npy"], "does not exist"),
    (["sample", "--z_init", "/no/z.npy"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2_and_no_output_file(capsys, tmp_path, args, match):
    code, _, err = pspc(capsys, *args, "--outdir", tmp_path / "o", "--quiet", "--device", "cpu")
    assert_one_line_error(code, err, match)
    assert not (tmp_path / "o").exists() or not any(p.suffix == ".npy" for p in (tmp_path / "o").rglob("*"))


def test_wrongly_shaped_z_file_is_an_error(capsys, tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((18, 2, 3, 16, 16), np.float32))
    code, _, err = pspc(capsys, "denoise", "--z", tmp_path / "z.npy", "--outdir", tmp_path, *SMALL)
    assert_one_line_error(code, err, "--z latents are (3, 16, 16)")


def test_dataset_make_and_info(capsys, tmp_path):
    np.save(tmp_path / "a.npy", np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8))
    code, out, _ = pspc(capsys, "dataset", "make", tmp_path / "a.npy", tmp_path / "a.zip")
    assert code == 0 and "wrote 5 images" in out
    code, out, _ = pspc(capsys, "dataset", "info", tmp_path / "a.zip")
    assert code == 0 and "5 images, 3x4x4" in out
    code, _, err = pspc(capsys, "dataset", "make", tmp_path / "a.npy", tmp_path / "a.tar")
    assert_one_line_error(code, err, "must end in .zip")


def test_exit_codes_raised_inside_commands_reach_the_shell(capsys, tmp_path, monkeypatch):
    """Ctrl-C during a run exits 130 (and keeps the finished batches)."""
    from pspc_core.runtime.batches import BatchJob

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(BatchJob, "run", interrupted)
    code, _, err = pspc(capsys, "sample", "--outdir", tmp_path, "--n_samples", 2, *SMALL)
    assert code == 130 and "rerun the same command to resume" in err
