"""ELS, boundary-broken ELS and LS against Kamb & Ganguli's own code, timed in the same run on the same inputs.

Default: one 32x32 latent (a CIFAR-10 test image + noise, z = x + t·ε) against the 1,000 images of the CIFAR-10
subset (no x-flips), at t = 0.01, 0.3, 2, 20 and patch sizes 3 and 15, torch threads 2 for both. Ours: median of
--repeats calls after a warm-up call. Theirs: their own modules in a separate process (kamb_baseline.py) with
glibc's allocator kept from returning memory (their fastest setting), batches of 50 (exact), median of --repeats
calls at each t, timed for each (model, k) just before ours (a shared machine's slow spells then hit both).
max|diff| compares the two outputs (theirs: float32 distances, ~1e-3 off the exact value at t = 0.01). Where
their code or the CIFAR-10 data is absent, ours alone on builtin:shapes:1000.

    flock /tmp/pspc-cpu.lock python benchmarks/bench_els.py [--t 0.01,0.3,2,20] [--k 3,15] [--repeats 3]
    python benchmarks/bench_els.py --device cuda --no-baseline      # ours on a GPU (the torch path)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
AUTHORS = SHARED / "baselines" / "kamb-els"
STUBS = SHARED / "baselines" / "stubs"
sys.path.insert(0, str(ROOT / "benchmarks"))

from pspc_core import create_denoiser, load_dataset  # noqa: E402
from baseline import child_env  # noqa: E402
from timing import timed  # noqa: E402

# (label, our denoiser and parameters, their module)
MODELS = [("ELS", "els", {"boundary": "circular"}), ("bbELS", "els", {"boundary": "zeros"}), ("LS", "ls", {})]


def inputs(n_latents: int):
    """(dataset, clean latents x [B, C, R, R] in [-1, 1], noise ε of the same shape)."""
    zip_path = SHARED / "data" / "cifar10-train-1k-32.zip"
    probes = SHARED / "data" / "cifar10-test-probes.npz"
    if zip_path.exists() and probes.exists():
        data = load_dataset(zip_path)
        x = torch.from_numpy(np.load(probes)["horse32"][:n_latents]).float() / 127.5 - 1
    else:
        data = load_dataset("builtin:shapes:1000")
        x = data.images[:n_latents].float() / 127.5 - 1
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    return data, x, eps


def theirs(images: torch.Tensor, z: np.ndarray, ts, cases, repeats: int, threads: int):
    """Their outputs and seconds per call, from kamb_baseline.py in its own process."""
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        np.save(work / "images.npy", images.numpy())
        np.save(work / "z.npy", z)
        np.save(work / "t.npy", np.asarray(ts, dtype=np.float64))
        (work / "cases.json").write_text(json.dumps({"cases": cases, "repeats": repeats, "threads": threads}))
        cmd = [sys.executable, "-I", str(ROOT / "benchmarks" / "kamb_baseline.py"), str(AUTHORS), str(STUBS), str(work)]
        run = subprocess.run(cmd, capture_output=True, text=True, env=child_env(threads), cwd=work)
        if run.returncode:
            raise RuntimeError(f"the authors' code failed:\n{run.stderr}")
        seconds = json.loads(run.stdout.strip().splitlines()[-1])
        return dict(np.load(work / "out.npz")), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t", default="0.01,0.3,2,20", help="noise levels (our convention, t = σ)")
    ap.add_argument("--k", default="3,15", help="patch sizes")
    ap.add_argument("--models", default="ELS,bbELS,LS")
    ap.add_argument("--latents", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="calls per case, ours and theirs; medians are reported")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-baseline", action="store_true", help="time ours only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ts = [float(v) for v in args.t.split(",")]
    ks = [int(v) for v in args.k.split(",")]
    models = [m for m in MODELS if m[0] in args.models.split(",")]
    data, x, eps = inputs(args.latents)
    z = torch.stack([x + t * eps for t in ts])  # [T, B, C, R, R]
    R = data.resolution
    baseline = not args.no_baseline and AUTHORS.exists() and "cifar10" in str(data.source)
    print(f"{args.latents} latent(s) vs {len(data)} images 3x{R}x{R} ({data.source}), device {device}, "
          f"torch threads {torch.get_num_threads()} (theirs: {args.threads})")
    if baseline:
        print("theirs: Kambm/convolutional_diffusion utils/idealscore.py in its own process, batches of 50; "
              f"medians of {args.repeats} calls, timed just before ours for each (model, k)", flush=True)
    print(f"{'model':<6} {'k':>3} {'t':>6} {'ours s':>8} {'theirs s':>9} {'speed-up':>9} {'max|diff|':>10}")
    for label, name, params in models:
        for k in ks:
            if baseline:  # case by case, so that a shared machine's slow and fast spells hit both sides alike
                ref, ref_s = theirs(data.images, z.numpy(), ts, [[label, k]], args.repeats, args.threads)
            den = create_denoiser(name, dataset=data, patch_sizes=[k], **params).to(device)
            for i, t in enumerate(ts):
                zi = z[i].to(device)
                den(zi, t)  # warm-up (compiles or loads the kernel on first use)
                out, ours = timed(lambda: den(zi, t), device, args.repeats)
                row = f"{label:<6} {k:>3} {t:>6g} {ours:>8.3f}"
                if baseline:
                    calls = sorted(ref_s[f"{label}_k{k}"][i])
                    their = calls[len(calls) // 2]
                    diff = np.abs(out.cpu().numpy() - ref[f"{label}_k{k}"][i]).max()
                    row += f" {their:>9.2f} {their / ours:>8.1f}x {diff:>10.1e}"
                print(row, flush=True)


if __name__ == "__main__":
    main()
