"""Every built-in training-free denoiser on CUDA against its CPU output and the paper's reference outputs.

Runs the recorded reference inputs (exp_a: 32x32, exp_b: 16x16 with PSPC-Flex heatmaps) plus a batch that mixes
noise levels, on the CPU and on CUDA, and prints the max abs difference of each. Needs the reference files:
`--shared` points at a copy of ../shared (its data/ and reference/pspc/).

    python benchmarks/gpu_correctness.py --shared ../shared
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from pspc_core import create_denoiser, edm_schedule, load_dataset

TOL = 1e-4


def rows(den, exp, device):
    for k, t in enumerate(exp["t"]):
        z = torch.from_numpy(exp["z"][k])
        yield k, den(z.to(device), torch.full((z.shape[0],), float(t), device=device)).cpu()


def check(name, make, exp, key, device) -> bool:
    cpu, gpu = make(), make().to(device)
    worst_ref = worst_cpu = 0.0
    for (k, out_cpu), (_, out_gpu) in zip(rows(cpu, exp, "cpu"), rows(gpu, exp, device)):
        worst_cpu = max(worst_cpu, (out_gpu - out_cpu).abs().max().item())
        if key is not None:
            worst_ref = max(worst_ref, (out_gpu - torch.from_numpy(exp[key][k])).abs().max().item())
    g = torch.Generator().manual_seed(0)
    z = torch.randn(exp["z"].shape[1:], generator=g) * 0.5 + torch.from_numpy(exp["z"][-1])
    t = edm_schedule(18)[torch.randint(18, (z.shape[0],), generator=g)]
    mixed = (gpu(z.to(device), t.to(device)).cpu() - cpu(z, t)).abs().max().item()
    ok = worst_ref <= TOL and worst_cpu <= TOL and mixed <= TOL
    ref = f"{worst_ref:.2e}" if key is not None else "-"
    print(f"{name:<22} vs reference {ref:>9}   vs CPU {worst_cpu:.2e}   mixed-t batch vs CPU {mixed:.2e}   "
          f"{'ok' if ok else 'FAIL'}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return
    ref = args.shared / "reference" / "pspc"
    exp_a = dict(np.load(ref / "exp_a_cifar32.npz"))
    exp_b = dict(np.load(ref / "exp_b_cifar16.npz"))
    d32 = load_dataset(args.shared / "data" / "cifar10-train-1k-32.zip", xflip=True)
    d16 = load_dataset(args.shared / "data" / "cifar10-train-200-16.zip", xflip=True)
    heat = str(ref / "heatmaps16.npy")
    print(f"device: {torch.cuda.get_device_name(0) if args.device.startswith('cuda') else args.device}")
    results = [
        check("empirical 32x32", lambda: create_denoiser("empirical", dataset=d32), exp_a, "empirical", args.device),
        check("gaussian rank 64", lambda: create_denoiser("gaussian", dataset=d32, rank=64), exp_a, "gaussian_r64", args.device),
        check("gaussian full rank", lambda: create_denoiser("gaussian", dataset=d32), exp_a, None, args.device),
        check("pspc_sq 32x32", lambda: create_denoiser("pspc_sq", dataset=d32), exp_a, "pspc_sq", args.device),
        check("pspc_sq 16x16", lambda: create_denoiser("pspc_sq", dataset=d16), exp_b, "pspc_sq", args.device),
        check("pspc_flex 16x16", lambda: create_denoiser("pspc_flex", dataset=d16, heatmaps=heat), exp_b, "pspc_flex", args.device),
    ]
    print("CUDA correctness:", "all ok" if all(results) else "FAILURES above")


if __name__ == "__main__":
    main()
