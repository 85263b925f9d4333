"""Speed-up of `torchrun --nproc_per_node N` over one process for a PSPC-Square denoise run.

One process uses every core (torch's default threads); under torchrun each rank gets cores / N threads.
Both runs denoise the same latents (latent i from seed + i), so the outputs are compared too.

    python benchmarks/bench_distributed.py [--nproc 2] [--n-samples 64] [--batch 8] [--device cpu]
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


def run(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--n-samples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--data", default="builtin:shapes:2000")
    ap.add_argument("--t-idx", type=int, default=12)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (each rank takes its own GPU)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    job = ["denoise", "-d", "pspc_sq", "--data", args.data, "--t_idx", str(args.t_idx), "--n_samples",
           str(args.n_samples), "--batch", str(args.batch), "--quiet"] + (["--device", "cpu"] if args.device == "cpu" else [])
    with tempfile.TemporaryDirectory() as tmp:
        one = run([sys.executable, "-m", "pspc_cli", *job, "--outdir", f"{tmp}/one"], {**os.environ})
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // args.nproc))}
        many = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc), "-m", "pspc_cli",
                    *job, "--outdir", f"{tmp}/many"], env)
        name = f"pspc_sq_outputs_t_{args.t_idx:02d}_of_18.npy"
        diff = np.abs(np.load(Path(tmp, "one", name)) - np.load(Path(tmp, "many", name))).max()
    print(f"PSPC-Square denoise, {args.n_samples} latents (batch {args.batch}) vs {args.data} with x-flips, "
          f"t_idx {args.t_idx}, {cores} cores, device {args.device}")
    print(f"{'processes':>10} {'wall s':>8} {'speed-up':>9}")
    print(f"{1:>10} {one:>8.2f} {1.0:>8.2f}x")
    print(f"{args.nproc:>10} {many:>8.2f} {one / many:>8.2f}x")
    print(f"max |difference| between the two outputs: {diff:.2e} (includes process start-up and data loading)")


if __name__ == "__main__":
    main()
