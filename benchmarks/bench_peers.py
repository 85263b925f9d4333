"""Peer denoisers: pca_locality against the authors' own code (or their stated timings), knn against the
empirical denoiser.

pca_locality: 5 latents (the 5 horse32 test probes plus noise) against CIFAR-10 N = 1000 at 32x32, no flips (the
authors' reference setting), at the reference noise levels and over the 18-point EDM grid. Per level: the first
call (the noise level's mask and its plan are built, once per level) and later calls (median). Theirs: with
--lukoianov (a checkout of ottogin/locality-in-diffusion-models; their code is not among the project's baselines)
their own model is timed in this run, in its own process (lukoianov_baseline.py, glibc's allocator kept from
returning memory, the same threads, one batch of all N: their exact softmax; an untimed call first, as ours), and
ours with their masks is checked against their outputs. Without it the
figures stated for their code when this benchmark was set: 1.4 s per call for 5 latents (it builds the mask in
every call) plus 3.6 s of SVD once, on the machine they were measured on (NOT re-timed).

knn: k = 2048, n = 256 against the empirical denoiser on CIFAR-10 5k at 32x32 with x-flips (N = 10,000), the
same latents, both timed in this run (median of repeats).

    flock /tmp/pspc-cpu.lock python benchmarks/bench_peers.py [--device cpu] [--skip-pca] [--skip-knn]
        [--lukoianov CHECKOUT --lukoianov-python PYTHON_WITH_THEIR_IMPORTS]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "benchmarks"))

from baseline import child_env  # noqa: E402
from timing import timed  # noqa: E402

from pspc_core import create_denoiser, edm_schedule, load_dataset  # noqa: E402

THEIR_CALL_S, THEIR_SVD_S = 1.4, 3.6  # stated for their code (see above): used without --lukoianov
REFERENCE_T = [0.0100013, 0.3014198, 2.0004822, 19.9605159]  # lukoianov_16.npz's noise levels: their DDPM
REFERENCE_INDEX = [0, 88, 396, 768]  # timestep indices (linear β 1e-4 -> 0.02, 1000 steps), t = sqrt((1 - ᾱ) / ᾱ)
STUBS = SHARED / "baselines" / "stubs"
WARM_UP_T = 1.0  # not among the timed levels


def theirs_pca(code: Path, python: str, images: torch.Tensor, z: np.ndarray, repeats: int):
    """(their outputs [T, B, C, R, R], their masks [T, D, D] bool, training seconds, median seconds per call at each
    REFERENCE_INDEX) from lukoianov_baseline.py in its own process; exits with one line where it cannot run."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        np.save(work / "images.npy", images.numpy())
        np.save(work / "z.npy", z)
        (work / "cases.json").write_text(json.dumps({"indices": REFERENCE_INDEX, "repeats": repeats,
                                                     "threads": torch.get_num_threads(), "batch": len(images)}))
        cmd = [python, "-I", str(ROOT / "benchmarks" / "lukoianov_baseline.py"), str(code), str(STUBS), str(work)]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, env=child_env(torch.get_num_threads()),
                                 cwd=work)
            times = json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else None
        except (OSError, IndexError, ValueError) as exc:
            raise SystemExit(f"error: their code could not be run with {python} ({exc}); give --lukoianov-python a "
                             "Python that has diffusers, omegaconf, faiss-cpu and tqdm") from None
        if times is None:
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"error: their code ({code}) failed: {last}; check --lukoianov (a checkout of "
                             "ottogin/locality-in-diffusion-models) and that --lukoianov-python has its imports")
        out = np.load(work / "out.npz")
        D = images[0].numel()
        masks = np.unpackbits(out["masks"], axis=1)[:, : D * D].reshape(-1, D, D).astype(bool)
        return out["D"], masks, times["train"], [float(np.median(c)) for c in times["calls"]]


def bench_pca(device: torch.device, repeats: int, code: Path | None, python: str) -> None:
    from pspc_gaussian.eigen import covariance_eigen

    ds = load_dataset(SHARED / "data" / "cifar10-train-1k-32.zip")
    x = torch.from_numpy(np.load(SHARED / "data" / "cifar10-test-probes.npz")["horse32"]).float() / 127.5 - 1
    eps = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    print(f"\npca_locality: 5 latents vs {len(ds)} images 3x32x32 (cifar10-train-1k-32, no flips), tau = 0.05, "
          f"device {device}")
    their = None
    if code is not None:
        z_ref = torch.stack([x + t * eps for t in REFERENCE_T]).numpy()
        their = theirs_pca(code, python, ds.images, z_ref, repeats)
    if their is None:
        call_s, svd_s, source = [THEIR_CALL_S] * len(REFERENCE_T), THEIR_SVD_S, "stated, not re-timed"
    else:
        ref_out, ref_masks, svd_s, call_s = their
        source = f"{code.name} in its own process, one batch of {len(ds)} (the exact softmax), median of {repeats}"
    grid_call_s = float(np.median(call_s))  # their call is dense: its cost does not depend on t
    start = time.perf_counter()
    covariance_eigen(ds, ddof=1)
    eigen_s = time.perf_counter() - start
    den = create_denoiser("pca_locality", dataset=ds, threshold=0.05).to(device)
    print(f"theirs: {source}")
    print(f"once per dataset: float64 eigendecomposition (Gram matrix) {eigen_s:.2f} s; theirs (float32 covariance "
          f"and SVD) {svd_s:.1f} s")
    start = time.perf_counter()  # a noise level of its own: the kernel's compilation stays out of the first calls
    den((x + WARM_UP_T * eps).to(device), WARM_UP_T)
    print(f"warm-up call at t = {WARM_UP_T} (a machine's first use compiles the CPU kernel; numba caches it): "
          f"{time.perf_counter() - start:.2f} s")
    print(f"{'t':>9} {'members':>8} {'sums':>6} {'first s':>8} {'later s':>8} {'cpu s':>6} {'theirs s':>9} "
          f"{'x first':>8} {'x later':>8}")
    for label, levels in (("reference", REFERENCE_T), ("EDM grid", edm_schedule(18).tolist())):
        firsts, laters, theirs_s = [], [], []
        for i, t in enumerate(levels):
            z = (x + t * eps).to(device)
            start = time.perf_counter()
            den(z, t)
            first = time.perf_counter() - start
            cpu = time.process_time()
            _, later = timed(lambda: den(z, t), device, repeats)
            cpu = (time.process_time() - cpu) / repeats
            plan = den._plan(t)
            members = int(den.mask(t).sum()) / den.dim
            sums = plan.additions / den.dim if hasattr(plan, "additions") else float("nan")
            ref_s = call_s[i] if label == "reference" else grid_call_s
            firsts.append(first)
            laters.append(later)
            theirs_s.append(ref_s)
            print(f"{t:>9.4g} {members:>8.0f} {sums:>6.0f} {first:>8.3f} {later:>8.3f} {cpu:>6.2f} "
                  f"{ref_s:>9.2f} {ref_s / first:>7.1f}x {ref_s / later:>7.1f}x")
        mean_s = np.mean(theirs_s)
        print(f"{'mean, ' + label:>26}: first {np.mean(firsts):.3f} s, later {np.mean(laters):.3f} s, theirs "
              f"{mean_s:.2f} s -> {mean_s / np.mean(firsts):.1f}x / {mean_s / np.mean(laters):.1f}x")
    print("(members: mask entries per output; sums: additions per output after differencing neighbouring columns;\n"
          " first: the call that builds the noise level's mask and plan; later: median of the next calls; cpu: CPU\n"
          " seconds of a later call over all threads, ~2x wall on an idle 2-core machine; theirs: their call builds\n"
          " its mask every time, and on the EDM grid it is their reference levels' median: a dense product per\n"
          " call, whatever t)")
    if their is not None:
        exactness_pca(ds, x, eps, ref_out, ref_masks)


def exactness_pca(ds, x: torch.Tensor, eps: torch.Tensor, ref_out: np.ndarray, ref_masks: np.ndarray) -> None:
    """Ours with their masks against their outputs, and how many mask entries ours (float64) sets otherwise."""
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "masks.npz"
        np.savez(path, t=np.asarray(REFERENCE_T), masks=ref_masks)
        with_theirs = create_denoiser("pca_locality", dataset=ds, masks=str(path))
        ours = create_denoiser("pca_locality", dataset=ds)
        print(f"{'t':>9} {'max|ours - theirs| (their masks)':>34} {'mask entries set otherwise':>27}")
        for i, t in enumerate(REFERENCE_T):
            diff = np.abs(with_theirs(x + t * eps, t).numpy() - ref_out[i]).max()
            flips = int((ours.mask(t).numpy() != ref_masks[i]).sum())
            print(f"{t:>9.4g} {diff:>34.1e} {flips:>27d}")


def bench_knn(device: torch.device, repeats: int, batch: int) -> None:
    ds = load_dataset(SHARED / "data" / "cifar10-train-5k-32.zip", xflip=True)
    knn = create_denoiser("knn", dataset=ds, k=2048, n=256).to(device)
    emp = create_denoiser("empirical", dataset=ds).to(device)
    g = torch.Generator().manual_seed(0)
    x = ds.images[torch.randint(len(ds), (batch,), generator=g)].float() / 127.5 - 1
    eps = torch.randn(x.shape, generator=g)
    print(f"\nknn (k = 2048, n = 256) vs empirical: {batch} latents vs {len(ds)} images 3x32x32 "
          f"(cifar10-train-5k-32 with x-flips), device {device}, both timed in this run")
    print(f"{'t':>9} {'knn s':>8} {'empirical s':>12} {'knn/emp':>8} {'rms(knn - emp)':>15}")
    for t in (0.01, 0.3, 2.0, 20.0, 80.0):
        z = (x + t * eps).to(device)
        out_k, s_k = timed(lambda: knn(z, t), device, repeats)
        out_e, s_e = timed(lambda: emp(z, t), device, repeats)
        rms = (out_k - out_e).double().pow(2).mean().sqrt().item()
        print(f"{t:>9.4g} {s_k:>8.3f} {s_e:>12.3f} {s_k / s_e:>7.2f}x {rms:>15.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="latents per knn/empirical call")
    ap.add_argument("--skip-pca", action="store_true")
    ap.add_argument("--skip-knn", action="store_true")
    ap.add_argument("--lukoianov", type=Path, help="a checkout of ottogin/locality-in-diffusion-models: time their "
                    "pca_locality in this run instead of quoting their stated figures")
    ap.add_argument("--lukoianov-python", default=sys.executable,
                    help="a Python with their imports (torch, diffusers, omegaconf, faiss-cpu, tqdm)")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    if not args.skip_pca:
        bench_pca(device, args.repeats, args.lukoianov, args.lukoianov_python)
    if not args.skip_knn:
        bench_knn(device, args.repeats, args.batch)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
