"""`torchrun --nproc_per_node 2` (gloo) writes the same bytes as one process, and killed runs resume."""

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

COMMON = ["--data", "builtin:shapes:300", "--quiet", "--device", "cpu"]


def pspc(args, nproc=1, **popen):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), "-m", "pspc_cli"]
    cmd = (launcher if nproc > 1 else [sys.executable, "-m", "pspc_cli"]) + [str(a) for a in args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    rank_lines = [line for line in out.stderr.splitlines() if line.startswith("[rank")]
    assert out.returncode == 0, "\n".join(rank_lines[-30:]) or out.stderr[:3000] + "\n...\n" + out.stderr[-2000:]
    return out


@pytest.mark.parametrize("args, output", [
    (["denoise", "-d", "empirical", "--t_idx", 11, "--n_samples", 7, "--batch", 2], "empirical_outputs_t_11_of_18.npy"),
    (["sample", "-d", "gaussian", "-p", "rank=20", "--n_samples", 5, "--batch", 2, "--n_steps", 6, "--solver", "heun"],
     "gaussian_samples.npy"),
    (["sample", "-d", "empirical", "--n_samples", 3, "--batch", 1, "--n_steps", 5], "empirical_samples.npy"),
    (["compare", "-r", "empirical", "-d", "gaussian,empirical", "--n_samples", 5, "--batch", 2, "--n_steps", 4],
     "compare.csv"),
    (["compare", "-r", "gaussian", "-d", "empirical", "--latents", "trajectory", "--n_samples", 3, "--batch", 1,
      "--n_steps", 4], "compare.csv"),
    (["calibrate", "-r", "gaussian", "-d", "pspc_sq", "--candidates", "2,3,5", "--n_samples", 5, "--batch", 2,
      "--n_steps", 3], "calibration.csv"),
    (["heatmaps", "-d", "gaussian", "-p", "rank=10", "--n_latents", 2, "--n_steps", 3], "gaussian_heatmaps.safetensors"),
])
def test_two_ranks_write_the_same_bytes_as_one_process(tmp_path, args, output):
    for run, nproc in (("one", 1), ("two", 2)):
        pspc([*args, *COMMON, "--outdir", tmp_path / run], nproc=nproc)
    one, two = (tmp_path / d / output for d in ("one", "two"))
    assert one.read_bytes() == two.read_bytes()
    assert not (tmp_path / "two" / ".pspc-work").exists()


def _workers(launcher_pid: int) -> list[int]:
    """The worker processes torchrun started (its direct children)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(launcher_pid)], capture_output=True, text=True).stdout.split()
        if out:
            return [int(p) for p in out]
        time.sleep(0.1)
    raise AssertionError("torchrun started no workers")


def _wait_gone(pids: list[int]) -> None:
    """Wait until every process in `pids` has exited (torchrun's agent may leave before its workers)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("nproc", [1, 2])
def test_killed_run_resumes_without_redoing_finished_batches(tmp_path, nproc):
    # 12-24 batches of 100 steps: seconds of work, so the kill lands mid-run however fast the denoiser is
    args = ["sample", "-d", "empirical", "--data", "builtin:shapes:1000", "--n_samples", 24, "--batch", 1,
            "--n_steps", 100, "--quiet", "--device", "cpu", "--outdir", tmp_path / "run"]
    proc = pspc(args, nproc=nproc, popen=True)
    work = tmp_path / "run" / ".pspc-work"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(work.rglob("batch_*.npy"))) < 2:
        time.sleep(0.1)
    workers = _workers(proc.pid) if nproc > 1 else [proc.pid]
    os.kill(workers[0], signal.SIGKILL)  # a crashed rank, not a polite Ctrl-C; torchrun then stops the others
    proc.wait(timeout=120)
    _wait_gone(workers)
    kept = {p.name: p.stat().st_mtime_ns for p in work.rglob("batch_*.npy")}
    assert len(kept) >= 2 and not (tmp_path / "run" / "empirical_samples.npy").exists()
    resumed = pspc(args, nproc=nproc)
    assert "resuming" in resumed.stderr
    pspc([*args[:-1], tmp_path / "fresh"])
    assert (tmp_path / "run" / "empirical_samples.npy").read_bytes() == (tmp_path / "fresh" / "empirical_samples.npy").read_bytes()
