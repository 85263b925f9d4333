"""Runs are safe to repeat: one run per output folder, resumes never mix old and new inputs, damaged work is redone."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import assert_one_line_error, pspc

QUIET = ["-q", "--device", "cpu"]


def _interrupt_after(monkeypatch, n_batches):
    """Make the n-th batch file write raise KeyboardInterrupt (as Ctrl-C would); return the undo."""
    from pspc_core.runtime import batches

    real, calls = batches.save_npy, []

    def save(path, array):
        calls.append(path)
        if len(calls) > n_batches:
            raise KeyboardInterrupt
        real(path, array)

    monkeypatch.setattr(batches, "save_npy", save)
    return lambda: monkeypatch.setattr(batches, "save_npy", real)


def test_a_second_run_into_the_same_folder_stops_with_one_line(capsys, tmp_path):
    out = tmp_path / "out"
    args = ["sample", "-d", "empirical", "--data", "builtin:shapes:1000", "--n-samples", "40", "--batch", "1",
            "-o", str(out), *QUIET]
    first = subprocess.Popen([sys.executable, "-m", "pspc_cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".pspc-work" / "lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        code, _, err = pspc(capsys, *args)
        assert_one_line_error(code, err, f"another pspc run (process {first.pid}) is writing to {out}")
    finally:
        first.kill()
        first.wait()
    code, _, err = pspc(capsys, *args[:6], "4", *args[7:])  # the killed run's lock went with it
    assert code == 0, err


def test_replacing_the_data_at_the_same_path_sets_old_work_aside(capsys, tmp_path, monkeypatch):
    data = tmp_path / "data.npy"
    rng = np.random.default_rng(0)
    np.save(data, rng.integers(0, 256, (30, 3, 8, 8), dtype=np.uint8))
    args = ["denoise", "--data", data, "--n-samples", 6, "--batch", 2, "-o", tmp_path / "run", *QUIET]
    undo = _interrupt_after(monkeypatch, 2)
    code, _, _ = pspc(capsys, *args)
    assert code == 130
    undo()
    np.save(data, rng.integers(0, 256, (30, 3, 8, 8), dtype=np.uint8))  # same path, same size, other images
    code, _, err = pspc(capsys, *args)
    assert code == 0 and "setting aside 2 finished batches" in err and "denoiser" in err
    code, _, _ = pspc(capsys, *args[:-len(QUIET) - 2], "-o", tmp_path / "fresh", *QUIET)
    name = "empirical_outputs_t_09_of_18.npy"
    assert np.array_equal(np.load(tmp_path / "run" / name), np.load(tmp_path / "fresh" / name))


def test_a_damaged_batch_file_is_recomputed_with_a_warning(capsys, tmp_path, monkeypatch):
    args = ["sample", "-d", "gaussian", "--data", "builtin:shapes:30", "--n-samples", 4, "--batch", 2,
            "--n-steps", 3, "-o", tmp_path / "run", *QUIET]
    undo = _interrupt_after(monkeypatch, 1)
    assert pspc(capsys, *args)[0] == 130
    undo()
    (batch,) = (tmp_path / "run" / ".pspc-work").rglob("batch_*.npy")
    batch.write_bytes(batch.read_bytes()[:100])  # truncated, as by a crash mid-write of another tool
    code, _, err = pspc(capsys, *args)
    assert code == 0 and "damaged; recomputing it" in err
    pspc(capsys, *args[:-len(QUIET) - 2], "-o", tmp_path / "fresh", *QUIET)
    assert np.array_equal(np.load(tmp_path / "run" / "gaussian_samples.npy"),
                          np.load(tmp_path / "fresh" / "gaussian_samples.npy"))


def test_outputs_get_the_permissions_of_plain_new_files(capsys, tmp_path):
    code, _, _ = pspc(capsys, "convert", "--help")
    assert code == 0
    from pspc_network.shipped import CHECKPOINT

    from pspc_network.checkpoint import read_checkpoint, save_safetensors
    from pspc_core.runtime.atomic import atomic_path

    config, state = read_checkpoint(CHECKPOINT)
    with atomic_path(tmp_path / "net.safetensors") as tmp:
        save_safetensors(config, state, tmp)
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "net.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


def test_per_latent_class_labels_reach_a_conditional_network_through_the_registry(tmp_path):
    from edm_pickles import SMALL, write_edm_pickle

    from pspc_core import create_denoiser

    write_edm_pickle(tmp_path / "cond.pkl", SMALL["ddpmpp-edm-cond"])
    den = create_denoiser("network", checkpoint=str(tmp_path / "cond.pkl"), class_label="[0,3,1]")
    assert den.class_labels(3).argmax(1).tolist() == [0, 3, 1]
    with pytest.raises(Exception, match="3 labels for a batch of 2"):
        den.class_labels(2)


def test_the_nearest_image_report_uses_the_denoisers_own_training_set(capsys, tmp_path):
    # --data has 10 images, the empirical denoiser is given 20 others: its samples copy those 20, and the report
    # must say so (measured against --data, none would be a copy)
    code, out, err = pspc(capsys, "sample", "-o", tmp_path, "--data", "builtin:shapes:10:1", "-p",
                          "dataset=builtin:shapes:20:2", "--n-samples", 4, "--n-steps", 4, "-q", "--device", "cpu")
    assert code == 0, err
    assert "4 of 4 samples are copies of training images" in out
