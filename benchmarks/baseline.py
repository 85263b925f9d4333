"""Run another project's code (the authors' own implementation) in its own process, at its best, and time it.

Speed claims are ratios against the code a user would otherwise run, timed on the same machine, in the same run,
with the same threads, data and latents. The baselines live beside the checkout (`../shared/baselines/NAME`,
licences of their own): they are never imported by the project, only by the child process started here.

The child process gets
* its own interpreter (`python -I`: no PYTHONPATH, no user site), the baseline's folder and the import-only
  `stubs/` first on sys.path, so `import pspc` is the paper's package and nothing of ours is imported;
* `torch.set_num_threads(threads)`, as ours;
* glibc's allocator kept from returning memory (`MALLOC_*` below): the paper's code is several times faster so.

    with Baseline("pspc-paper", setup="from pspc.denoisers import EmpiricalDenoiser; ...") as paper:
        paper.run("den = EmpiricalDenoiser(ds)")              # once; res.seconds, res.peak_mib (RSS growth)
        res = paper.call("den(z, t)", z=z, t=t)               # res.output (numpy), res.seconds, res.peak_mib

`setup` and `run` execute statements in one namespace (which keeps what they define); `call` evaluates an
expression on the given inputs (torch tensors in the child, from numpy arrays or tensors here), timing only the
expression, and returns its value as a numpy array. Every request is answered before the next is sent, so the
caller can interleave its own timings with the baseline's (ours, theirs, ours, theirs, ...).
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BASELINES = Path(__file__).resolve().parents[1].parent / "shared" / "baselines"
FAIR_ENV = {  # glibc keeps freed memory instead of returning and re-faulting it (see baselines/README.md)
    "MALLOC_MMAP_THRESHOLD_": "1073741824",
    "MALLOC_TRIM_THRESHOLD_": "1073741824",
    "MALLOC_TOP_PAD_": "1073741824",
}


def child_env(threads: int) -> dict:
    """The environment of a baseline's process: ours without PYTHON* settings and our allocator's, plus FAIR_ENV
    and `threads` for OpenMP and MKL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MALLOC_"))}
    return {**env, **FAIR_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def available(name: str = "pspc-paper") -> bool:
    """Whether the baseline's folder is beside this checkout (it is absent on a user's machine)."""
    return (BASELINES / name).is_dir()


@dataclass
class Result:
    output: object  # numpy array (or whatever the expression returned, converted by `to_numpy`)
    seconds: float
    peak_mib: float  # the child's peak resident memory during the call, above its resident memory before it


class BaselineError(RuntimeError):
    pass


class BaselineTimeout(BaselineError):
    """A call ran past its timeout; the child was killed (its state is gone: start a new Baseline)."""


class Baseline:
    """A child process holding one baseline's code; requests go one at a time (see the module docstring)."""

    def __init__(self, name: str, setup: str = "", threads: int = 2, env: dict | None = None):
        folder = BASELINES / name
        if not folder.is_dir():
            raise BaselineError(f"baseline {name} is not at {folder}")
        self.name = name
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-u", __file__, "--child", str(folder), str(BASELINES / "stubs"), str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**child_env(threads), **(env or {})},
            cwd=str(folder))
        self.run(setup)

    def run(self, statements: str) -> Result:
        """Execute statements in the child's namespace: their wall-clock seconds, and in `peak_mib` how much the
        child's resident memory grew (what they keep, such as a dataset or a decomposition)."""
        return self._ask(("run", statements, {}))

    def call(self, expression: str, timeout: float | None = None, **inputs) -> Result:
        """Evaluate `expression` on `inputs` (numpy arrays or tensors, tensors in the child); time it alone.
        Past `timeout` seconds the child is killed and BaselineTimeout raised."""
        return self._ask(("call", expression, {k: _to_numpy(v) for k, v in inputs.items()}), timeout)

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                _send(self._proc.stdin, ("exit", "", {}))
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> "Baseline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ask(self, request, timeout: float | None = None) -> Result:
        try:
            _send(self._proc.stdin, request)
            if timeout is not None:
                import select

                ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
                if not ready:
                    self._proc.kill()
                    self._proc.wait()
                    raise BaselineTimeout(f"baseline {self.name}: no answer within {timeout:g} s (child killed)")
            kind, payload = _receive(self._proc.stdout)
        except (OSError, EOFError, struct.error):
            raise BaselineError(f"baseline {self.name}: the child process died (exit code {self._proc.poll()})") from None
        if kind == "error":
            raise BaselineError(f"baseline {self.name}: {payload}")
        return Result(*payload)


def _to_numpy(value):
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream):
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    (n,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(n))


# ---------------------------------------------------------------------------------------------------------------
# The child: everything below runs in the baseline's process, with nothing of the project importable.


def _status_kib(key: str) -> int:
    import re

    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _peak_reset() -> int:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        return _status_kib("VmRSS")
    except OSError:
        return -1


def _peak_mib(base: int) -> float:
    return float("nan") if base < 0 else (_status_kib("VmHWM") - base) / 1024


def _child(folder: str, stubs: str, threads: int) -> None:
    import time

    sys.path[:0] = [folder, stubs]
    inbox, outbox = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the baseline's prints must not corrupt the channel
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    space: dict = {"torch": torch, "np": np}
    while True:
        try:
            kind, code, inputs = _receive(inbox)
        except EOFError:  # the parent went away
            return
        if kind == "exit":
            return
        try:
            if kind == "run":
                before = _status_kib("VmRSS")
                start = time.perf_counter()
                exec(code, space)
                seconds = time.perf_counter() - start
                _send(outbox, ("ok", (None, seconds, (_status_kib("VmRSS") - before) / 1024)))
            else:
                args = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
                local = dict(space, **args)
                base = _peak_reset()
                start = time.perf_counter()
                out = eval(code, local)
                seconds = time.perf_counter() - start
                peak = _peak_mib(base)
                out = out.detach().cpu().numpy() if hasattr(out, "detach") else out
                _send(outbox, ("ok", (out, seconds, peak)))
        except Exception as exc:  # reported to the parent, which raises it there
            _send(outbox, ("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--child":
    _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
