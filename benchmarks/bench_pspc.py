"""PSPC-Square and PSPC-Flex vs the per-crop oracle (tests/oracles.py, the paper's loop), in the same run.

Default: 10 latents (CIFAR-10 test cats + noise) against 20,000 32x32 images (the 1k CIFAR-10 subset with flips,
repeated; or builtin:shapes:20000 where ../shared is absent). PSPC-Square at patch sizes 32, 23, 7, 3 and
PSPC-Flex at λ 0.7 and 0.3 (smooth local Gaussian heatmaps), each at the noise level the paper's CIFAR-10
schedule pairs with it. The oracle loops over crops and is linear in the number of images, so it runs on the
first --oracle-images images and its time is scaled by N / oracle-images (stated in the output). The oracle is
timed in float32 (as the paper's code runs); the max|diff| column compares ours with the oracle run in float64 on
that subset, so it measures our error, not the float32 oracle's (near-ties at t = 0.002 make that ~1e-4).

    python benchmarks/bench_pspc.py [--latents 10] [--n-images 20000] [--oracle-images 500] [--device cpu]
    python benchmarks/bench_pspc.py --device cuda --n-images 100000 --random   # full CIFAR-10 scale on a GPU
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "tests"))

from oracles import flex_crop_masks_direct, pspc_direct, square_crop_masks  # noqa: E402

from pspc_core import Dataset, load_dataset  # noqa: E402
from pspc_patch.flex import PSPCFlex  # noqa: E402
from pspc_patch.square import PSPCSquare  # noqa: E402
from timing import timed  # noqa: E402

# (label, kind, patch size or λ, t): t is the paper's 18-point grid value the CIFAR-10 schedule pairs with it.
CASES = [
    ("square k=32", "sq", 32, 8.40093517),
    ("square k=23", "sq", 23, 5.31519461),
    ("square k=7", "sq", 7, 1.08817005),
    ("square k=3", "sq", 3, 0.29644212),
    ("square k=3", "sq", 3, 0.00199999963),
    ("flex λ=0.7", "flex", 0.7, 5.31519461),
    ("flex λ=0.3", "flex", 0.3, 0.05994729),
    ("flex λ=0.3", "flex", 0.3, 0.00199999963),
]


def training_set(n: int, random: bool) -> Dataset:
    if random:
        g = torch.Generator().manual_seed(0)
        return Dataset(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8), source="random uint8")
    zip_path = SHARED / "data" / "cifar10-train-1k-32.zip"
    base = load_dataset(zip_path, xflip=True) if zip_path.exists() else load_dataset("builtin:shapes:20000")
    reps = -(-n // len(base))
    return Dataset(base.images.repeat(reps, 1, 1, 1)[:n].contiguous(), source=f"{base.source} (repeated)")


def clean_latents(n: int, ds: Dataset) -> torch.Tensor:
    probes = SHARED / "data" / "cifar10-test-probes.npz"
    if probes.exists():
        x = torch.from_numpy(np.load(probes)["cat32"]).float() / 127.5 - 1
        return x[torch.arange(n) % len(x)]
    g = torch.Generator().manual_seed(1)
    return ds.images[torch.randint(len(ds), (n,), generator=g)].float() / 127.5 - 1


def smooth_heatmaps(R: int, width: float = 3.0) -> torch.Tensor:
    """h[y, x, i, j] = exp(-((i - y)² + (j - x)²) / 2w²) · (1 + 0.05 u): local, smooth, slightly irregular."""
    i = torch.arange(R).float()
    d2 = (i[:, None, None, None] - i[None, None, :, None]) ** 2 + (i[None, :, None, None] - i[None, None, None, :]) ** 2
    u = torch.rand(R, R, R, R, generator=torch.Generator().manual_seed(2))
    return (torch.exp(-d2 / (2 * width**2)) * (1 + 0.05 * u))[None]


class PeakMemory:
    """Peak memory above the start: CUDA allocator peak, or peak RSS (Linux /proc, reset per measurement)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.base = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mib = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self.peak_mib = (_status_kib("VmHWM") - self.base) / 1024


def _status_kib(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latents", type=int, default=10)
    ap.add_argument("--n-images", type=int, default=20000)
    ap.add_argument("--oracle-images", type=int, default=500, help="0: skip the oracle")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk-size", type=int, default=None, help="latent×image pairs per step (default: the denoiser's)")
    ap.add_argument("--repeats", type=int, default=3, help="calls per case (ours and the oracle); medians are reported")
    ap.add_argument("--random", action="store_true", help="random uint8 images instead of CIFAR-10")
    args = ap.parse_args()
    device = torch.device(args.device)
    ds = training_set(args.n_images, args.random)
    R = ds.resolution
    g = torch.Generator().manual_seed(3)
    x = clean_latents(args.latents, ds)
    eps = torch.randn(x.shape, generator=g)
    heatmaps = smooth_heatmaps(R)
    chunk = {} if args.chunk_size is None else {"chunk_size": args.chunk_size}
    n_or = min(args.oracle_images, len(ds))
    sub = ds.images[:n_or]
    print(f"PSPC: {args.latents} latents vs {len(ds)} images 3x{R}x{R} ({ds.source}), device {device}, "
          f"torch threads {torch.get_num_threads()}")
    if n_or:
        print(f"oracle (per-crop loop) timed on the first {n_or} images and scaled x{len(ds) / n_or:g} (linear in N)")
    print(f"{'case':<13} {'t':>8} {'ours s':>8} {'peak MiB':>9} {'oracle s':>9} {'speed-up':>9} {'max|diff|':>10}"
          + ("  (max|diff|: ours vs float64 oracle)" if n_or else ""))
    for label, kind, value, t in CASES:
        if kind == "sq":
            make = lambda data: PSPCSquare(data, patch_sizes=[value], **chunk)  # noqa: E731
            masks = lambda: square_crop_masks(R, value)  # noqa: E731
        else:
            make = lambda data: PSPCFlex(data, heatmaps, thresholds=[value], **chunk)  # noqa: E731
            masks = lambda: flex_crop_masks_direct(heatmaps[0], value)  # noqa: E731
        z = (x + t * eps).to(device)
        tt = torch.full((args.latents,), t, device=device)
        den = make(ds).to(device)
        den(z[:1], tt[:1])  # warm-up: builds the crops once, as a sampler's first call would
        with PeakMemory(device) as mem:
            _, ours = timed(lambda: den(z, tt), device, args.repeats)
        row = f"{label:<13} {t:>8.4f} {ours:>8.3f} {mem.peak_mib:>9.0f}"
        if n_or:
            small = make(Dataset(sub)).to(device)
            mine = small(z, tt).cpu()
            crops = masks()
            _, oracle = timed(lambda: pspc_direct(sub, z.cpu(), tt.cpu(), crops), torch.device("cpu"), args.repeats)
            oracle *= len(ds) / n_or
            ref = pspc_direct(sub, z.cpu().double(), tt.cpu().double(), crops)
            row += f" {oracle:>9.1f} {oracle / ours:>8.0f}x {(mine.double() - ref).abs().max().item():>10.1e}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
