"""Throughput of `pspc compare` (latents × noise levels per second) at full CIFAR-10 scale on one device.

The training set is random uint8 32x32 RGB (N images, default 100,000, no flips: the paper's 50,000 with flips
is the same size); the reference is the network shipped for the built-in data and the compared denoisers are
empirical, gaussian, pspc_sq and pspc_flex (with the shipped heatmaps). Each denoiser's time is measured
separately by running compare once per denoiser after the reference outputs are cached.

    python benchmarks/bench_compare.py --device cuda [--images 100000] [--latents 32]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--latents", type=int, default=32)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--denoisers", default="empirical,gaussian,pspc_sq,pspc_flex")
    args = ap.parse_args()
    from pspc_network.shipped import CHECKPOINT
    from pspc_patch.shipped import HEATMAPS

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "random.npy"
        rng = np.random.default_rng(0)
        np.save(data, rng.integers(0, 256, (args.images, 3, 32, 32), dtype=np.uint8))
        common = [sys.executable, "-m", "pspc_cli", "compare", "--data", str(data), "--no-xflip", "--quiet",
                  "--network-pkl", str(CHECKPOINT), "--n_samples", str(args.latents),
                  "--batch", str(args.latents), "--device", args.device, "--outdir", tmp]
        flex = ["-p", f"pspc_flex.heatmaps={HEATMAPS}"]
        print(f"pspc compare: {args.latents} latents x 18 noise levels vs {args.images} random 32x32 images, "
              f"reference: shipped network, device {args.device}")
        print(f"{'denoiser':<10} {'wall s':>8} {'latent-levels/s':>16}")
        for name in args.denoisers.split(","):
            extra = flex if name == "pspc_flex" else []
            start = time.perf_counter()
            subprocess.run([*common, "-d", name, *extra], check=True, env=os.environ, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            print(f"{name:<10} {wall:>8.1f} {args.latents * 18 / wall:>16.1f}", flush=True)
    print("(wall time per run includes start-up, data loading and the reference network's outputs, which are "
          "recomputed per run)")


if __name__ == "__main__":
    main()
