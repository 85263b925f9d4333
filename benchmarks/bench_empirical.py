"""Empirical denoiser vs the paper's direct chunked formulation (tests/oracles.py), measured in the same run.

Default: 100 latents against 20,000 32x32 RGB images (CIFAR-10 subset with flips, repeated; or the built-in set
where ../shared is absent), at all 18 noise levels. Prints time per call, the speed-up and the max abs
difference at each level.

    python benchmarks/bench_empirical.py [--latents 100] [--images 20000] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from oracles import empirical_direct  # noqa: E402

from pspc_core import Dataset, create_denoiser, edm_schedule, load_dataset  # noqa: E402
from timing import timed  # noqa: E402


def training_set(n: int) -> Dataset:
    zip_path = ROOT.parent / "shared" / "data" / "cifar10-train-5k-32.zip"
    base = load_dataset(zip_path, xflip=True) if zip_path.exists() else load_dataset("builtin:shapes:10000", xflip=True)
    reps = -(-n // len(base))
    return Dataset(base.images.repeat(reps, 1, 1, 1)[:n].contiguous(), source=f"{base.source} (repeated)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latents", type=int, default=100)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--levels", type=int, default=18, help="how many of the 18 grid points to run")
    args = ap.parse_args()
    device = torch.device(args.device)
    ds = training_set(args.images)
    den = create_denoiser("empirical", dataset=ds).to(device)
    images_dev = ds.images.to(device)
    g = torch.Generator().manual_seed(0)
    x = ds.images[torch.randint(len(ds), (args.latents,), generator=g)].float() / 127.5 - 1
    eps = torch.randn(x.shape, generator=g)
    print(f"empirical denoiser: {args.latents} latents vs {len(ds)} images {ds.channels}x{ds.resolution}x{ds.resolution}"
          f" ({ds.source}), device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'t_idx':>5} {'t':>10} {'ours s':>9} {'direct s':>9} {'speed-up':>9} {'max|diff|':>10}")
    total_fast = total_ref = 0.0
    worst = 0.0
    for i, t in enumerate(edm_schedule(18)[: args.levels].tolist()):
        z = (x + t * eps).to(device)
        tt = torch.full((args.latents,), t, device=device)
        fast, s_fast = timed(lambda: den(z, tt), device)
        ref, s_ref = timed(lambda: empirical_direct(images_dev, z, tt), device)
        diff = (fast - ref).abs().max().item()
        worst = max(worst, diff)
        total_fast, total_ref = total_fast + s_fast, total_ref + s_ref
        print(f"{i:>5} {t:>10.5g} {s_fast:>9.3f} {s_ref:>9.3f} {s_ref / s_fast:>8.1f}x {diff:>10.2e}")
    print(f"total: ours {total_fast:.2f} s, direct {total_ref:.2f} s, speed-up {total_ref / total_fast:.1f}x, "
          f"worst max|diff| {worst:.2e}")


if __name__ == "__main__":
    main()
