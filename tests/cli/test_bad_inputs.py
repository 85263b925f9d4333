"""Every failure a user can cause or meet is one line, `error: ...`, exit code 2, no traceback, and no output left.

The table names each bad input and a fragment of the message it must give; `{tmp}` is a scratch folder holding
the fixture files made by `files` (a corrupt zip, NaN latents, ...).
"""

import os
import zipfile

import numpy as np
import torch
import pytest

from helpers import assert_one_line_error, pspc

SMALL = ["--data", "builtin:shapes:20", "-q", "--device", "cpu"]

CASES = [
    # usage: typer's own errors
    (["sample", "--n-samples", "0"], "Invalid value for '--n-samples'"),
    (["sample", "--bogus"], "--bogus"),
    (["sample", "--solver", "rk4"], "Invalid value for '--solver'"),
    (["denoise", "--batch", "0"], "Invalid value for '--batch'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["sample", "--n-steps", "two"], "Invalid value for '--n-steps'"),
    (["show"], "Missing argument"),
    (["compare", "--latents", "sideways"], "Invalid value for '--latents'"),
    (["heatmaps", "--format", "npy"], "Invalid value for '--format'"),
    # the noise grid and noise levels
    (["sample", "--t-min", "10", "--t-max", "1"], "0 < t_min < t_max"),
    (["sample", "--t-min", "0"], "0 < t_min < t_max"),
    (["sample", "--t-max", "inf"], "finite 0 < t_min < t_max"),
    (["sample", "--rho", "0"], "rho > 0"),
    (["sample", "--rho", "nan"], "rho > 0"),
    (["sample", "--rho", "0.001"], "leaves the range"),
    (["sample", "--t-max", "1e300"], "leaves the range"),
    (["denoise", "-d", "pspc_sq", "-p", "rho=inf"], "rho > 0"),
    (["denoise", "--t-idx", "18"], "outside the 18-point grid"),
    (["denoise", "--t-idx", "-1"], "outside the 18-point grid"),
    # denoisers, presets, parameters
    (["sample", "-d", "empiricl"], "did you mean 'empirical'"),
    (["sample", "--preset", "pspc_sq_cifar1"], "did you mean 'pspc_sq_cifar10'"),
    (["sample", "-p", "nokey"], "KEY=VALUE"),
    (["sample", "-p", "bogus=1"], "no parameter 'bogus'"),
    (["sample", "-p", "chunk_size=abc"], "'chunk_size' expects int"),
    (["sample", "-p", "chunk_size=0"], "chunk_size must be at least 1"),
    (["sample", "-d", "gaussian", "-p", "rank=0"], "rank must be at least 1"),
    (["sample", "-d", "pspc_sq", "-p", "patch_sizes=0,3"], "patch size 0 does not fit"),
    (["sample", "-d", "pspc_sq", "-p", "patch_sizes=40"], "patch size 40 does not fit"),
    (["sample", "-d", "pspc_sq", "-p", "patch_sizes=3,5", "-p", "t_grid=1"], "one noise level per value"),
    (["sample", "-d", "pspc_flex"], "pspc_flex needs heatmaps"),
    (["sample", "-d", "pspc_flex", "-p", "heatmaps={tmp}/none.npy"], "does not exist"),
    (["sample", "-d", "empirical,gaussian", "-p", "rank=3"], "ambiguous"),
    (["sample", "-d", "gaussian,gaussian"], "chosen twice"),
    (["sample", "-d", "network", "-p", "checkpoint={tmp}/none.pkl"], "does not exist"),
    (["sample", "-d", "network", "-p", "checkpoint={tmp}/text.pkl"], "not a plain EDM checkpoint"),
    (["sample", "-d", "network", "-p", "class_label=3", "--data", "builtin:shapes"], "unconditional"),
    (["compare", "-r", "nosuch"], "unknown denoiser 'nosuch'"),
    (["compare", "-r", ""], "--reference holds an empty denoiser name"),
    (["sample", "-d", ""], "-d holds an empty denoiser name"),
    (["sample", "-d", "empirical,,gaussian"], "-d holds an empty denoiser name"),
    (["sample", "-d", "pspc_sq", "-p", "patch_sizes=3,,5"], "empty item"),
    (["sample", "-d", "network", "-p", "checkpoint="], "it is empty"),
    (["sample", "-p", "dataset="], "it is empty"),
    (["sample", "--data", ""], "--data is empty"),
    (["sample", "--network-pkl", ""], "--network-pkl is empty"),
    (["heatmaps", "-d", "empirical", "--n-latents", "1", "--n-steps", "1"], "cannot be differentiated"),
    (["heatmaps", "--float16", "--format", "npz"], "--float16 applies to --format safetensors"),
    (["sample", "-d", "gaussian", "--network-pkl", "{tmp}/text.pkl"], "network is not among the chosen denoisers"),
    # the peer families
    (["sample", "-d", "els", "-p", "patch_sizes=4"], "patch size 4 is even"),
    (["sample", "-d", "els", "-p", "patch_sizes=33"], "patch size 33 does not fit"),
    (["sample", "-d", "els", "-p", "boundary=reflect"], "one of circular, zeros"),
    (["sample", "-d", "ls", "-p", "patch_sizes=3,5", "-p", "t_grid=1"], "one noise level per value"),
    (["sample", "-d", "knn", "-p", "k=40"], "training images N = 40, 20 images and their x-flips"),
    (["sample", "-d", "knn", "-p", "k=5", "-p", "n=0"], "n = 0"),
    (["sample", "-d", "pca_locality", "-p", "threshold=1.5"], "outside (0, 1]"),
    (["sample", "-d", "pca_locality", "-p", "masks={tmp}/masks.npz"], "use masks made for this resolution"),
    (["sample", "-d", "pca_locality", "-p", "masks={tmp}/array_named.npz"], "is not an .npz archive"),
    (["sample", "-d", "pca_locality", "-p", "masks={tmp}/notes.txt"], "is not an .npz archive"),
    (["sample", "-d", "pspc_flex", "-p", "heatmaps={tmp}/array_named.npz"], "is not an .npz archive"),
    (["sample", "-d", "pspc_flex", "-p", "heatmaps={tmp}/archive_named.npy"], "is an .npz archive, not an .npy"),
    (["sample", "-d", "pspc_flex", "-p", "heatmaps={tmp}/text_named.npy"], "is not a readable .npy array"),
    # data
    (["sample", "--data", "/no/such.zip"], "does not exist"),
    (["sample", "--data", "builtin:nothing"], "unknown built-in dataset"),
    (["sample", "--data", "builtin:shapes:0"], "ask for 1 to"),
    (["sample", "--data", "builtin:shapes:1000000000"], "ask for 1 to"),
    (["sample", "--data", "{tmp}/notes.txt"], "unsupported file type"),
    (["sample", "--data", "{tmp}/corrupt.zip"], "not a readable zip file"),
    (["sample", "--data", "{tmp}/bomb.zip"], "dataset.json"),
    (["dataset", "info", "/no/such/folder"], "does not exist"),
    (["dataset", "make", "{tmp}/a.npy", "{tmp}/a.tar"], "must end in .zip"),
    # latent files
    (["denoise", "--z", "/no/z.npy"], "does not exist"),
    (["denoise", "--z", "{tmp}/nan_z.npy", "--n-steps", "2", "--t-idx", "0"], "NaN or infinite"),
    (["denoise", "--z", "{tmp}/small_z.npy", "--n-steps", "2", "--t-idx", "0"], "use matching latents"),
    (["sample", "--z-init", "{tmp}/inf_z0.npy"], "NaN or infinite"),
    (["sample", "--z-init", "{tmp}/notes.txt"], "not a readable .npy"),
    (["sample", "--z-init", "{tmp}/empty_z0.npy"], "holds no latents"),
    (["sample", "--z-init", "{tmp}"], "is a folder"),
    (["denoise", "--z", "{tmp}/empty_z.npy", "--n-steps", "2", "--t-idx", "0"], "holds no latents"),
    (["sample", "--z-init", "{tmp}/inf_z0.npy", "--n-samples", "3"], "--n-samples has no effect together with --z-init"),
    (["denoise", "--z", "{tmp}/small_z.npy", "--seed", "3"], "--seed has no effect together with --z"),
    (["compare", "--z", "{tmp}/small_z.npy", "--samples"], "--samples has no effect together with --z"),
    (["sample", "--seed", "99999999999999999999"], "Invalid value for '--seed'"),
    (["sample", "--seed", "4294967296"], "Invalid value for '--seed'"),
    # files, folders, disks, devices
    (["sample", "-o", "{tmp}/a_file"], "a_file"),
    (["sample", "--n-samples", "1000000000"], "free"),
    (["sample", "--device", "cuda"], "no usable CUDA device"),
    (["sample", "--device", "tpu:banana"], "not a torch device"),
    (["sample", "--device", "mps"], "no usable mps device"),
    (["sample", "--registry", "/no/such.toml"], "registry file /no/such.toml does not exist"),
    (["sample", "--registry", "{tmp}/bad.toml"], "not valid TOML"),
    (["convert", "{tmp}/none.pkl", "{tmp}/out.safetensors"], "does not exist"),
    (["convert", "{tmp}/text.pkl", "{tmp}/text.pkl"], "same file"),
    (["convert", "{tmp}/text.pkl", "{tmp}"], "is a folder"),
    (["train", "--channel-mult", "1,two"], "--channel-mult expects comma-separated integers"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The fixture files the table refers to as {tmp}/NAME (made once; no test may change them)."""
    tmp_path = tmp_path_factory.mktemp("inputs")
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "corrupt.zip").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "text.pkl").write_text("not a pickle")
    (tmp_path / "a_file").write_text("occupied")
    (tmp_path / "bad.toml").write_text("[defaults\n")
    np.save(tmp_path / "a.npy", np.zeros((2, 3, 4, 4), np.uint8))
    np.savez(tmp_path / "masks.npz", t=np.array([1.0]), masks=np.zeros((1, 5, 5), bool))
    with open(tmp_path / "array_named.npz", "wb") as f:  # an .npy's bytes under an .npz name
        np.save(f, np.zeros((1, 5, 5), bool))
    with open(tmp_path / "archive_named.npy", "wb") as f:  # and the reverse
        np.savez(f, t=np.zeros(1))
    (tmp_path / "text_named.npy").write_text("0 1 2")
    z = np.zeros((2, 1, 3, 32, 32), np.float32)
    z[1, 0, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan_z.npy", z)
    np.save(tmp_path / "small_z.npy", np.zeros((2, 1, 3, 8, 8), np.float32))
    z0 = np.zeros((1, 3, 32, 32), np.float32)
    z0[0, 0, 0, 0] = np.inf
    np.save(tmp_path / "inf_z0.npy", z0)
    np.save(tmp_path / "empty_z0.npy", np.zeros((0, 3, 32, 32), np.float32))
    np.save(tmp_path / "empty_z.npy", np.zeros((2, 0, 3, 32, 32), np.float32))
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:  # 1 MB on disk, 200 MB unpacked
        zf.writestr("dataset.json", '{"labels": [' + " " * (200 << 20) + "]}")
    return tmp_path


def _unless_given(args):
    """SMALL's options that `args` does not set itself."""
    out = []
    for i in range(0, len(SMALL)):
        if SMALL[i].startswith("-") and SMALL[i] not in args:
            out += [SMALL[i]] + ([SMALL[i + 1]] if i + 1 < len(SMALL) and not SMALL[i + 1].startswith("-") else [])
    return out


@pytest.mark.parametrize("args, fragment", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_no_output(capsys, files, tmp_path, args, fragment):
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(files)) for a in args]
    tail = [] if args[0] in ("nosuchcommand", "show", "dataset", "convert") else _unless_given(args)
    tail += ["-o", str(out)] if tail and "-o" not in args else []
    before = {p.name: p.stat().st_mtime_ns for p in files.iterdir()}
    code, stdout, err = pspc(capsys, *args, *tail)
    assert_one_line_error(code, err, fragment)
    assert not out.exists()
    assert {p.name: p.stat().st_mtime_ns for p in files.iterdir()} == before


def test_an_unwritable_output_folder_is_one_line(capsys, tmp_path):
    target = "/sys/pspc-test-out"  # read-only even for root
    try:
        os.mkdir(target)
        os.rmdir(target)
        pytest.skip("/sys is writable here")
    except OSError:
        pass
    code, _, err = pspc(capsys, "sample", "-o", target, *SMALL)
    assert_one_line_error(code, err, "cannot access /sys/pspc-test-out")


def test_a_full_disk_while_writing_is_one_line_and_leaves_no_partial_file(capsys, tmp_path, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "x"))

    monkeypatch.setattr(np, "save", full)
    code, _, err = pspc(capsys, "sample", "-o", tmp_path / "o", "--n-samples", 2, "--n-steps", 2, *SMALL)
    assert_one_line_error(code, err, "No space left on device")
    left = [p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert left == []  # no temporary or partial file, no output, no work folder (no batch had finished)


def test_ctrl_c_is_exit_130_and_keeps_finished_batches(capsys, tmp_path, monkeypatch):
    from pspc_core.runtime import batches

    calls = []
    real = batches.save_npy

    def interrupt_second(path, array):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, array)

    monkeypatch.setattr(batches, "save_npy", interrupt_second)
    args = ["sample", "-o", tmp_path, "--n-samples", 4, "--batch", 2, "--n-steps", 2, *SMALL]
    code, _, err = pspc(capsys, *args)
    assert code == 130 and "rerun the same command to resume" in err and "Traceback" not in err
    monkeypatch.setattr(batches, "save_npy", real)
    code, _, err = pspc(capsys, *args)
    assert code == 0 and "resuming: 1 of 2 batches" in err


@pytest.mark.parametrize("stop, code", [("interrupt-in-kernel", 130), ("sigterm", 143)])
def test_interruptions_inside_compiled_code_or_by_sigterm_keep_finished_batches(capsys, tmp_path, monkeypatch,
                                                                                 stop, code):
    import signal

    from pspc_core.runtime import batches

    calls = []
    real = batches.save_npy

    def stop_second(path, array):
        calls.append(path)
        if len(calls) == 2:
            if stop == "sigterm":
                signal.raise_signal(signal.SIGTERM)
            try:  # a compiled kernel reports Ctrl-C as a SystemError raised while handling it
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise SystemError("CPUDispatcher(<function kernel>) returned a result with an exception set")
        real(path, array)

    monkeypatch.setattr(batches, "save_npy", stop_second)
    args = ["sample", "-o", tmp_path, "--n-samples", 4, "--batch", 2, "--n-steps", 2, *SMALL]
    got, _, err = pspc(capsys, *args)
    assert got == code and "rerun the same command to resume" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler does not outlive the run
    monkeypatch.setattr(batches, "save_npy", real)
    got, _, err = pspc(capsys, *args)
    assert got == 0 and "resuming: 1 of 2 batches" in err


def test_torch_out_of_memory_is_one_line(capsys, tmp_path, monkeypatch):
    from pspc_core import latents

    def huge(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 799999999992 bytes")

    monkeypatch.setattr(latents, "forward_process", huge)
    monkeypatch.setattr("pspc_cli.cmd_denoise.forward_process", huge, raising=False)
    code, _, err = pspc(capsys, "denoise", "-o", tmp_path / "o", "--n-samples", 2, *SMALL)
    assert_one_line_error(code, err, "out of memory")
    assert not (tmp_path / "o").exists()


def test_a_denoiser_that_returns_nan_is_named_not_the_latents(capsys, tmp_path, monkeypatch):
    from pspc_gaussian.denoiser import GaussianDenoiser

    monkeypatch.setattr(GaussianDenoiser, "denoise", lambda self, z, t: torch.full_like(z, float("nan")))
    code, _, err = pspc(capsys, "sample", "-d", "gaussian", "-o", tmp_path / "o", "--n-samples", 2, "--n-steps", 2,
                        *SMALL)
    assert_one_line_error(code, err, "GaussianDenoiser returned NaN or infinite values at t = 80")
    assert not (tmp_path / "o").exists()


def test_a_full_disk_under_safetensors_is_one_line(capsys, tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from pspc_network import checkpoint

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No "
                              "space left on device\" })")

    monkeypatch.setattr(checkpoint, "save_safetensors", full)
    code, _, err = pspc(capsys, "train", "--data", "builtin:shapes:4", "--duration-kimg", "0.004", "--batch", "4",
                        "--model-channels", "16", "--channel-mult", "1", "-q", "-o", tmp_path / "t")
    info, *rest = err.strip().splitlines()  # train says what it trains first
    assert info.startswith("training ") and not info.startswith("error")
    assert_one_line_error(code, "\n".join(rest), "No space left on device", "free disk space")
