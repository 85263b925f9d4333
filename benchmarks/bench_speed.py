"""Speed of every training-free denoiser against the authors' own code, timed in the same run (one command).

For each case (denoiser, noise level t, batch of B latents) both implementations get the same training set (the
same zip, flips on), the same latents (CIFAR-10 test images + t·ε, fixed seeds), the same t and the same number
of threads. The paper's code (`../shared/baselines/pspc-paper`) runs in its own process (`baseline.py`: its own
sys.path, glibc allocator settings under which it is fastest, its default batch). After one warm-up call each,
the calls alternate, ours then theirs, `--rounds` times; a case's ratio is the median of the per-round ratios.
Every case prints the largest difference between the two outputs and each side's peak memory during a call
(resident memory above the level before the call: /proc VmHWM, reset per call). Ours is timed under glibc's
default allocator, as a user runs it, and its peak is measured apart, in a child process whose allocator returns
freed memory at once (`honest_rss`: there, per-call scratch is fresh pages every time, 1.4x slower calls).

    flock /tmp/pspc-cpu.lock python benchmarks/bench_speed.py             # the whole table, ~15-25 min
    python benchmarks/bench_speed.py --cases empirical,pspc_sq --batches 10 --rounds 3

Where ../shared is absent (a user's machine) it times ours alone on the built-in data.
Cases and their floors (the project's speed goals; `ok` marks a ratio at or above its floor):
  empirical  t = 80 and t = 0.002      ≥ 3x     10,000 CIFAR-10 32x32 images (cifar10-train-5k-32, x-flips)
  gaussian   t = 5.3                   report   same data; its decomposition (setup) timed apart from the call
  pspc_sq    k = 3 at t = 0.296        ≥ 50x    same data
  pspc_sq    k = 23 at t = 5.32        ≥ 10x    same data
  pspc_flex  λ = 0.3 at t = 0.0599     ≥ 10x    400 CIFAR-10 16x16 images (cifar10-train-200-16, x-flips) and
                                                 the paper's heatmaps (reference/pspc/heatmaps16.npy)
The paper's GaussianDenoiser builds a [B, D, D] matrix per call (3.8 GB per 100 latents): at B = 100 it runs
in calls of 10 latents, and slow cases run fewer rounds (`--budget`): the table says how many ran.
"""

from __future__ import annotations

import argparse
import gc
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from baseline import Baseline, BaselineTimeout, available  # noqa: E402

SHARED = HERE.parents[1] / "shared"
DATA32 = SHARED / "data" / "cifar10-train-5k-32.zip"
DATA16 = SHARED / "data" / "cifar10-train-200-16.zip"
PROBES = SHARED / "data" / "cifar10-test-probes.npz"
HEATMAPS16 = SHARED / "reference" / "pspc" / "heatmaps16.npy"
T = [float(v) for v in torch.tensor([79.99998474, 5.31519461, 0.29644212, 0.05994729, 0.00199999963])]
T80, T5, T03, T006, T0002 = T


@dataclass
class Case:
    name: str  # denoiser
    label: str  # parameters shown in the table
    t: float
    floor: float | None  # the speed goal (ratio), None: reported only
    res: int  # 32 or 16
    ours: dict  # create_denoiser parameters beyond the dataset
    paper: str  # statement building the paper's denoiser `den` from its dataset `ds`


CASES = [
    Case("empirical", "t=80", T80, 3, 32, {}, "den = EmpiricalDenoiser(ds)"),
    Case("empirical", "t=0.002", T0002, 3, 32, {}, "den = EmpiricalDenoiser(ds)"),
    Case("gaussian", "full rank", T5, None, 32, {}, "den = GaussianDenoiser(ds)"),
    Case("pspc_sq", "k=3", T03, 50, 32, {"patch_sizes": [3]},
         "den = PSPCSquareDenoiser(ds, torch.tensor([3]))"),
    Case("pspc_sq", "k=23", T5, 10, 32, {"patch_sizes": [23]},
         "den = PSPCSquareDenoiser(ds, torch.tensor([23]))"),
    Case("pspc_flex", "λ=0.3", T006, 10, 16, {"heatmaps": str(HEATMAPS16)},
         "den = PSPCFlexDenoiser(ds, torch.from_numpy(np.load(HEATMAPS)), "
         "torch.tensor([float(v) for v in CIFAR_THRESHOLD_SCHEDULE.split(',')]))"),
]

PAPER_IMPORTS = """
from pspc.dataset import ImageFolderDataset
from pspc.denoisers import (EmpiricalDenoiser, GaussianDenoiser, PSPCSquareDenoiser, PSPCFlexDenoiser,
                            CIFAR_THRESHOLD_SCHEDULE)
"""


class PaperSide:
    """The paper's code in its own process (`baseline.py`), restarted (its setup replayed) after a call that ran
    past the timeout was killed."""

    def __init__(self, threads: int, setup: str):
        self.threads, self.history, self.proc = threads, [setup], None
        self._start()

    def _start(self):
        self.proc = Baseline("pspc-paper", setup=self.history[0], threads=self.threads)
        for statements in self.history[1:]:
            self.proc.run(statements)

    def run(self, statements: str):
        self.history.append(statements)
        return self.proc.run(statements)

    def forget(self, statements: str) -> None:
        self.history = [h for h in self.history if h != statements]

    def call(self, expression: str, timeout: float, **inputs):
        """The call's Result, or None when it ran past `timeout` (the process is restarted for what follows)."""
        try:
            return self.proc.call(expression, timeout=timeout, **inputs)
        except BaselineTimeout:
            self._start()
            return None

    def close(self) -> None:
        self.proc.close()


def honest_rss() -> None:
    """Make glibc return freed blocks at once (fixed 128 KiB mmap and trim thresholds) so that resident memory
    follows live memory and a call's peak shows (only in the child that measures it: it slows calls down)."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD


def peak_reset() -> int:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    return _status_kib("VmRSS")


def peak_mib(base: int) -> float:
    return (_status_kib("VmHWM") - base) / 1024


def _status_kib(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def latents(res: int, batch: int, t: float, dataset) -> torch.Tensor:
    """Clean CIFAR-10 test images (cycled to `batch`), or training images without ../shared, plus t·ε."""
    if PROBES.exists():
        x = torch.from_numpy(np.load(PROBES)["cat32" if res == 32 else "ship16"]).float() / 127.5 - 1
    else:
        x = dataset.images[:16].float() / 127.5 - 1
    x = x[torch.arange(batch) % len(x)]
    return x + t * torch.randn(x.shape, generator=torch.Generator().manual_seed(batch))


def our_data(res: int):
    from pspc_core import Dataset, load_dataset

    if res == 32:
        return load_dataset(DATA32 if DATA32.exists() else "builtin:shapes:5000", xflip=True)
    if DATA16.exists():
        return load_dataset(DATA16, xflip=True)
    full = load_dataset("builtin:shapes:200", xflip=True).images.float()  # 2x2 box filter to 16x16
    return Dataset(torch.nn.functional.avg_pool2d(full, 2).round().to(torch.uint8), source="builtin:shapes:200 16x16")


def smooth_heatmaps(res: int) -> str:
    """Stand-in heatmaps without ../shared, as a .npy file (the `heatmaps` parameter is a path): h[y, x, i, j] =
    exp(-((i-y)² + (j-x)²) / 18), all 18 levels."""
    import tempfile

    path = Path(tempfile.gettempdir()) / f"pspc-bench-heatmaps-{res}.npy"
    i = torch.arange(res).float()
    d2 = (i[:, None, None, None] - i[None, None, :, None]) ** 2 + (i[None, :, None, None] - i[None, None, None, :]) ** 2
    np.save(path, torch.exp(-d2 / 18).expand(18, res, res, res, res).numpy())
    return str(path)


def timed_ours(den, z, t):
    gc.collect()
    start = time.perf_counter()
    out = den(z, t)
    return out, time.perf_counter() - start


def peak_in_child(case: Case, batch: int, threads: int) -> float:
    """MiB of resident memory one call of ours adds at this batch (`--peak-of`, a fresh process)."""
    import subprocess

    cmd = [sys.executable, __file__, "--peak-of", str(CASES.index(case)), "--batches", str(batch),
           "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    return float(done.stdout.split()[-1]) if done.returncode == 0 and done.stdout.split() else float("nan")


def peak_of(case: Case, batch: int) -> None:
    """Print the resident memory (MiB) one call adds, under an allocator that returns freed memory at once."""
    honest_rss()
    data = our_data(case.res)
    den = setup_case(case, data, None)["den"]
    z, t = latents(case.res, batch, case.t, data), torch.full((batch,), case.t)
    den(z, t)
    gc.collect()
    base = peak_reset()
    den(z, t)
    print(f"{peak_mib(base):.1f}")


def setup_case(case: Case, data, paper) -> dict:
    """Both denoisers built once per case: seconds, and resident memory kept (MiB), each side."""
    from pspc_core import create_denoiser

    params = dict(case.ours)
    if case.name == "pspc_flex" and not HEATMAPS16.exists():
        params["heatmaps"] = smooth_heatmaps(case.res)
    gc.collect()
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    den = create_denoiser(case.name, dataset=data, **params)
    den(latents(case.res, 1, case.t, data), case.t)  # kernels compiled or loaded, crops and caches built
    info = {"den": den, "ours_setup": time.perf_counter() - start, "ours_kept": (_status_kib("VmRSS") - before) / 1024,
            "paper_setup": float("nan"), "paper_kept": float("nan")}
    if paper is not None:
        res = paper.run(case.paper)
        info["paper_setup"], info["paper_kept"] = res.seconds, res.peak_mib
    return info


def run_case(case: Case, batch: int, data, den, paper, args) -> dict:
    z = latents(case.res, batch, case.t, data)
    t = torch.full((batch,), case.t)
    den(z, t)  # warm-up at this batch size
    row = {"case": case, "batch": batch, "ours": [], "paper": [], "paper_mib": float("nan"),
           "ours_mib": peak_in_child(case, batch, args.threads)}
    call = "den(z, t)"
    if case.name == "gaussian" and batch > 10:  # the paper's call holds [B, D, D]: batches of 10
        call = "torch.cat([den(z[i:i + 10], t[i:i + 10]) for i in range(0, len(z), 10)])"
        row["note"] = "paper in calls of 10"

    def one_round(paper_result=None):
        out, s = timed_ours(den, z, t)
        row["ours"].append(s)
        if paper is None:
            return
        res = paper_result or paper.call(call, args.call_timeout, z=z, t=t)
        if res is None:
            row["paper_timeout"] = args.call_timeout
            return
        row["paper"].append(res.seconds)
        row["paper_mib"] = res.peak_mib if np.isnan(row["paper_mib"]) else max(row["paper_mib"], res.peak_mib)
        row["diff"] = (out - torch.from_numpy(res.output)).abs().max().item()

    if paper is not None:
        first = paper.call(call, args.call_timeout, z=z, t=t)  # warm-up; it counts as a round when slow
        if first is None:
            row["paper_timeout"] = args.call_timeout
        elif first.seconds > args.budget / (args.rounds + 1):
            one_round(first)
    while len(row["ours"]) < args.rounds:
        if "paper_timeout" in row or (row["paper"] and sum(row["paper"]) + row["paper"][-1] > args.budget):
            row["ours"].append(timed_ours(den, z, t)[1])  # ours alone from here
            continue
        one_round()
    return row


def fmt_row(row) -> str:
    case = row["case"]
    ours = statistics.median(row["ours"])
    text = f"{case.name:<10} {case.label:<9} {case.t:>8.4g} {row['batch']:>4} {ours:>9.4f}"
    floor = "" if case.floor is None else f"{case.floor:g}x"
    if row["paper"]:
        ratios = [p / o for p, o in zip(row["paper"], row["ours"])]
        r = statistics.median(ratios)
        ok = "" if case.floor is None else ("ok" if r >= case.floor else "BELOW")
        text += (f" {statistics.median(row['paper']):>9.3f} {r:>8.1f}x {min(ratios):>7.1f}-{max(ratios):<7.1f}"
                 f" {len(ratios):>2} {row.get('diff', float('nan')):>9.1e} {row['ours_mib']:>7.0f} "
                 f"{row['paper_mib']:>7.0f} {floor:>5} {ok}")
    elif "paper_timeout" in row:
        bound = row["paper_timeout"] / ours
        ok = "" if case.floor is None else ("ok" if bound >= case.floor else "?")
        text += (f" {'>' + format(row['paper_timeout'], 'g'):>9} {'>' + format(bound, '.0f'):>8}x {'':>15} {0:>2}"
                 f" {'':>9} {row['ours_mib']:>7.0f} {'':>7} {floor:>5} {ok}")
    else:
        text += f" {'':>9} {'':>9} {'':>15} {len(row['ours']):>2} {'':>9} {row['ours_mib']:>7.0f}"
    if "note" in row:
        text += f"  ({row['note']})"
    if "paper_timeout" in row and row["paper"]:
        text += f"  (a later paper call ran past {row['paper_timeout']:g} s)"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="empirical,gaussian,pspc_sq,pspc_flex", help="denoisers to run")
    ap.add_argument("--batches", default="10,100", help="latents per call")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timed calls per case (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch (and numba) threads, the same for both")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds of the paper's calls per case and batch")
    ap.add_argument("--call-timeout", type=float, default=300.0,
                    help="a paper call running longer is stopped; its ratio is then a lower bound (>)")
    ap.add_argument("--peak-of", type=int, help=argparse.SUPPRESS)  # the child of `peak_in_child`
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.peak_of is not None:
        return peak_of(CASES[args.peak_of], int(args.batches))
    wanted = args.cases.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    with_paper = available("pspc-paper") and DATA32.exists()
    import os
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    print(f"pspc speed vs the paper's code: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads each, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}"
          + ("" if with_paper else "  (../shared absent: ours alone)"))
    print(f"{'denoiser':<10} {'params':<9} {'t':>8} {'B':>4} {'ours s':>9} {'paper s':>9} {'ratio':>9} "
          f"{'min-max':>15} {'n':>2} {'max|diff|':>9} {'MiB us':>7} {'MiB pap':>7} {'floor':>5}")
    rows = []
    for res in (32, 16):
        cases = [c for c in CASES if c.res == res and c.name in wanted]
        if not cases:
            continue
        data = our_data(res)
        paper = None
        if with_paper:
            zip_path = DATA32 if res == 32 else DATA16
            paper = PaperSide(args.threads, PAPER_IMPORTS + f"\nHEATMAPS = {str(HEATMAPS16)!r}\n")
            load = paper.run(f"ds = ImageFolderDataset({str(zip_path)!r}, xflip=True)")
            print(f"  data {res}x{res}: {data.describe()} ({Path(str(data.source)).name}); paper's dataset "
                  f"object {load.seconds:.1f} s")
        try:
            for case in cases:
                info = setup_case(case, data, paper)
                print(f"  {case.name} {case.label}: setup ours {info['ours_setup']:.2f} s, keeps "
                      f"{info['ours_kept']:.0f} MiB; paper {info['paper_setup']:.2f} s, keeps {info['paper_kept']:.0f} "
                      "MiB" + (" (ours: float64 eigendecomposition cached per dataset; paper: float32 SVD)"
                               if case.name == "gaussian" else ""), flush=True)
                for batch in batches:
                    row = run_case(case, batch, data, info["den"], paper, args)
                    rows.append(row)
                    print(fmt_row(row), flush=True)
                if paper is not None:
                    paper.forget(case.paper)
                    paper.run("del den; import gc; gc.collect()")
                    paper.forget("del den; import gc; gc.collect()")
        finally:
            if paper is not None:
                paper.close()
    print(f"load average at the end {__import__('os').getloadavg()[0]:.1f} (other processes share the cores)")
    print("ratio: median over rounds of paper s / ours s (same latents, alternating calls); n: rounds; MiB us / "
          "pap: peak resident memory during a call above the level before it (what a denoiser keeps between calls "
          "is on its setup line); max|diff|: ours vs the paper's output")


if __name__ == "__main__":
    main()
