"""Heatmap throughput: batched vector-Jacobian products (`pspc_heatmaps.compute.heatmap_sum`) against one backward
pass per output pixel (`heatmap_sum_loop`), measured in the same run on the same latents.

Default network: the shipped built-in checkpoint (or --checkpoint PATH, any `network` checkpoint). Reports
latents per second for both (a latent = all R² Jacobian rows at one noise level), the speed-up, and the max
relative difference of the two sums.

    python benchmarks/bench_heatmaps.py [--checkpoint PATH] [--latents 4] [--batch 4] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch

from pspc_core import create_denoiser, load_dataset
from pspc_heatmaps.compute import heatmap_sum, heatmap_sum_loop
from pspc_core.latents import forward_process
from timing import timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="network checkpoint (default: the built-in one)")
    ap.add_argument("--data", default="builtin:shapes")
    ap.add_argument("--latents", type=int, default=4, help="latents timed for each method")
    ap.add_argument("--batch", type=int, default=4, help="latents per batched call")
    ap.add_argument("--baseline-latents", type=int, default=None, help="latents timed for the baseline (default: --latents)")
    ap.add_argument("--pixel-chunk", type=int, default=256)
    ap.add_argument("--t", type=float, default=1.0, help="noise level")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.checkpoint is None:
        from pspc_network.shipped import CHECKPOINT

        args.checkpoint = str(CHECKPOINT)
    den = create_denoiser("network", checkpoint=args.checkpoint).to(device)
    z = forward_process(load_dataset(args.data), range(args.latents), args.t).to(device)
    heatmap_sum(den, z[:1], args.t, args.pixel_chunk)  # warm-up (torch.func's first call is slow)

    def batched():
        return sum(heatmap_sum(den, z[s : s + args.batch], args.t, args.pixel_chunk)
                   for s in range(0, args.latents, args.batch))

    fast, t_fast = timed(batched, device)
    nb = min(args.baseline_latents or args.latents, args.latents)
    slow, t_slow = timed(lambda: heatmap_sum_loop(den, z[:nb], args.t), device)
    same = heatmap_sum(den, z[:nb], args.t, args.pixel_chunk)
    diff = float(((same - slow).abs().max() / slow.abs().max()))
    print(f"heatmaps of {args.checkpoint} at t = {args.t}: {args.latents} latents "
          f"{den.channels}x{den.resolution}x{den.resolution}, device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'method':<34} {'seconds':>9} {'latents/s':>10}")
    print(f"{'batched VJPs (batch ' + str(args.batch) + ', chunk ' + str(args.pixel_chunk) + ')':<34} "
          f"{t_fast:9.2f} {args.latents / t_fast:10.3f}")
    print(f"{'one backward pass per pixel (' + str(nb) + ' latents)':<34} {t_slow:9.2f} {nb / t_slow:10.3f}")
    print(f"speed-up {(args.latents / t_fast) / (nb / t_slow):.1f}x, max relative difference {diff:.1e}")


if __name__ == "__main__":
    main()
