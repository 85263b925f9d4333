"""`scale_sweep` (every candidate at once, shared work) against one denoiser call per candidate, same run, same
latents: what `pspc calibrate` spends per noise level.

Default: builtin:shapes (2000 images + x-flips = 4000, 32x32 RGB), 32 latents (training images + noise, seed 0)
at t = 5.3, 1.1, 0.3, 0.06; PSPC-Square over all 32 patch sizes, PSPC-Flex over the 20 masses of
`flex_candidates` with the shipped heatmaps. The separate column builds PSPCSquare(patch_sizes=[k]) /
PSPCFlex(thresholds=[λ]) per candidate and calls it once; crops are built outside both timings (each denoiser
caches its own; the sweep caches its plan per heatmap level and candidate set). max|diff| is the largest
difference between the two, over every candidate, latent and pixel.

    flock /tmp/pspc-cpu.lock python benchmarks/bench_calibrate.py [--latents 32] [--t 5.3,1.1,0.3,0.06]
        [--only sq|flex] [--candidates N]   # --candidates: every N-th candidate only (quick looks)
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pspc_core import load_dataset  # noqa: E402
from pspc_patch.calibration import flex_candidates, square_candidates  # noqa: E402
from pspc_patch.flex import PSPCFlex  # noqa: E402
from pspc_patch.shipped import HEATMAPS  # noqa: E402
from pspc_patch.square import PSPCSquare  # noqa: E402
from timing import timed  # noqa: E402


def latents(data, n: int, t: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = data.images[torch.randint(len(data), (n,), generator=g)].float() / 127.5 - 1
    return x + t * torch.randn(x.shape, generator=g)


def run(name, sweeper, single, values, data, ts, n_latents):
    rows = []
    for t in ts:
        z = latents(data, n_latents, t)
        sweeper.scale_sweep(z[:1], t, values)  # compile, and build the crops (cached), outside the timing
        cpu = time.process_time()
        swept, t_sweep = timed(lambda: sweeper.scale_sweep(z, t, values), torch.device("cpu"))
        c_sweep = time.process_time() - cpu
        t_sep, c_sep, diff = 0.0, 0.0, 0.0
        for i, v in enumerate(values):
            den = single(v)
            den.crops_for(t)
            cpu = time.process_time()
            out, sec = timed(lambda: den(z, t), torch.device("cpu"))
            c_sep += time.process_time() - cpu
            t_sep += sec
            diff = max(diff, (out - swept[i]).abs().max().item())
        rows.append((name, t, len(values), t_sweep, t_sep, c_sweep, c_sep, diff))
        print(f"{name:10s} t={t:<5g} candidates={len(values):3d}  sweep {t_sweep:8.2f} s  separate {t_sep:8.2f} s"
              f"  ratio {t_sep / t_sweep:6.2f}x (CPU time {c_sep / c_sweep:.2f}x)  max|diff| {diff:.1e}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latents", type=int, default=32)
    ap.add_argument("--t", default="5.3,1.1,0.3,0.06")
    ap.add_argument("--only", choices=["sq", "flex"], default=None)
    ap.add_argument("--candidates", type=int, default=1, help="keep every N-th candidate")
    args = ap.parse_args()
    ts = [float(v) for v in args.t.split(",")]
    data = load_dataset("builtin:shapes", xflip=True)
    print(f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"N = {len(data)} {tuple(data.images.shape[1:])}, {args.latents} latents", flush=True)
    start = time.perf_counter()
    rows = []
    if args.only in (None, "sq"):
        ks = square_candidates(data)[:: args.candidates]
        rows += run("pspc_sq", PSPCSquare(data, patch_sizes=[ks[0]]), lambda k: PSPCSquare(data, patch_sizes=[k]),
                    ks, data, ts, args.latents)
    if args.only in (None, "flex"):
        lams = flex_candidates(data)[:: args.candidates]
        rows += run("pspc_flex", PSPCFlex(data, str(HEATMAPS), thresholds=[lams[0]]),
                    lambda v: PSPCFlex(data, str(HEATMAPS), thresholds=[v]), lams, data, ts, args.latents)
    print("\n| denoiser | t | candidates | sweep (s) | separate (s) | ratio | CPU-time ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for name, t, v, a, b, ca, cb, d in rows:
        print(f"| {name} | {t:g} | {v} | {a:.2f} | {b:.2f} | {b / a:.2f}x | {cb / ca:.2f}x | {d:.1e} |")
    print(f"(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
