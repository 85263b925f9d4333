"""Exactness tables of the peer denoisers against their authors' stored outputs (reference/peers beside the
checkout) and our float64 oracles (tests/oracles.py): the numbers behind docs/pca_locality.md and docs/knn.md.

    python benchmarks/exactness_peers.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "plugins"))

from oracles import knn_estimate_direct, pca_locality_direct  # noqa: E402

from pspc_core import create_denoiser, load_dataset  # noqa: E402


def pca_tables(ds) -> None:
    from test_pca_locality import _float32_ratios

    from pspc_gaussian.eigen import covariance_eigen
    from pspc_pca_locality.masks import locality_mask, wiener_ratio

    ref = dict(np.load(SHARED / "reference" / "peers" / "lukoianov_16.npz"))
    D = int(ref["mask_shape"][0])
    stored = [torch.from_numpy(np.unpackbits(m)[: D * D].reshape(D, D).astype(bool)) for m in ref["mask_packed"]]
    _, evals, vecs = covariance_eigen(ds, ddof=1)
    wiener = create_denoiser("gaussian", dataset=ds, unbiased=True)
    print("pca_locality, lukoianov_16.npz (ship16 probes, N = 200, 16x16, tau = 0.05); max |difference|")
    print("| t | vs pca_bsN, their masks | vs oracle, their masks | vs oracle, our masks | pca_bs64 vs pca_bsN "
          "| gaussian(unbiased) vs wiener | mask flips (of D² = 589,824) | flips within float32 band | band |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, t in enumerate(ref["t"].tolist()):
        z = torch.from_numpy(ref["z"][i])
        theirs_den = create_denoiser("pca_locality", dataset=ds, masks=_masks_file(ref, stored))
        ours_den = create_denoiser("pca_locality", dataset=ds)
        out_theirs_masks = theirs_den(z, t).double()
        a = (out_theirs_masks - torch.from_numpy(ref["pca_bsN"][i])).abs().max().item()
        b = (out_theirs_masks - pca_locality_direct(ds.images, z, t, stored[i])).abs().max().item()
        mine = ours_den.mask(t)
        c = (ours_den(z, t).double() - pca_locality_direct(ds.images, z, t, mine)).abs().max().item()
        quirk = np.abs(ref["pca_bs64"][i] - ref["pca_bsN"][i]).max()
        w = (wiener(z, t) - torch.from_numpy(ref["wiener"][i])).abs().max().item()
        ratio = wiener_ratio(evals, vecs, t).abs()
        threshold = 0.05 * ratio.max()
        flips = locality_mask(evals, vecs, t, 0.05) != stored[i]
        band = (_float32_ratios(ds.images, float(ref["alpha_bar"][i])).double().abs() - ratio).abs().max().item()
        within = int((flips & ((ratio - threshold).abs() <= band)).sum())
        print(f"| {t:.4g} | {a:.1e} | {b:.1e} | {c:.1e} | {quirk:.3f} | {w:.1e} | {int(flips.sum())} | {within} | "
              f"{band:.1e} |")
    x = torch.from_numpy(ref["x"])
    for t in (0.002,):
        den = create_denoiser("pca_locality", dataset=ds)
        z = x + t * torch.from_numpy(ref["eps"][1])
        err = (den(z, t).double() - pca_locality_direct(ds.images, z, t, den.mask(t))).abs().max().item()
        print(f"| {t} (x + t·eps) | | | {err:.1e} | | | | | |")


_FILE = {}


def _masks_file(ref, stored) -> Path:
    if "path" not in _FILE:
        import tempfile

        path = Path(tempfile.mkdtemp()) / "masks.npz"
        np.savez(path, t=ref["t"], masks=torch.stack(stored).numpy())
        _FILE["path"] = path
    return _FILE["path"]


def knn_tables(ds) -> None:
    from test_knn import SETTINGS, authors_draws, replicated

    from pspc_knn.estimator import latent_seed

    ref = dict(np.load(SHARED / "reference" / "peers" / "knn_16.npz"))
    seeds = 256
    rms = lambda a: a.pow(2).mean().sqrt().item()  # noqa: E731
    print("\nknn, knn_16.npz (ship16 probes, N = 200, 16x16); errors are RMS against exact_posterior_mean")
    print("| (k, n) | t | their draws: max |ours - theirs| | latents within 1e-4 | per-seed RMS: ours (256) | "
          "theirs (256) | theirs stored (32) | ours first 32 | mean-of-seeds error: ours (256) | theirs (256) | "
          "ours (32) | theirs stored (32) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, (k, n) in SETTINGS.items():
        den = create_denoiser("knn", dataset=ds, k=k, n=n)
        for i, t in enumerate(ref["t"].tolist()):
            z, exact = torch.from_numpy(ref["z"][i]), torch.from_numpy(ref["exact_posterior_mean"][i]).double()
            tt = torch.full((5,), t)
            prop = den.proposal(z, tt)
            stored = torch.from_numpy(ref[key][i]).double()
            errs = torch.stack([(den.estimate(prop, authors_draws(prop, n, s)).view_as(z) - stored[s].float())
                                .abs().amax((1, 2, 3)) for s in range(32)])
            many = replicated(prop, seeds)
            theirs = den.estimate(many, torch.cat([authors_draws(prop, n, s) for s in range(seeds)]))
            ours = den.estimate(many, den.draws(many, [torch.Generator().manual_seed(latent_seed(s, z[b], t))
                                                       for s in range(seeds) for b in range(5)]))
            theirs, ours = (a.view(seeds, *z.shape).double() for a in (theirs, ours))
            print(f"| ({k}, {n}) | {t:g} | {errs.max().item():.1e} | {int((errs <= 1e-4).sum())}/160 | "
                  f"{rms(ours - exact):.4f} | {rms(theirs - exact):.4f} | {rms(stored - exact):.4f} | "
                  f"{rms(ours[:32] - exact):.4f} | {rms(ours.mean(0) - exact):.4f} | "
                  f"{rms(theirs.mean(0) - exact):.4f} | "
                  f"{rms(ours[:32].mean(0) - exact):.4f} | {rms(stored.mean(0) - exact):.4f} |")
    tiny = load_dataset(SHARED / "data" / "cifar10-train-200-16.zip")
    worst = 0.0
    for t in (0.002, 0.01, 0.3, 2.0, 20.0, 80.0):
        den = create_denoiser("knn", dataset=tiny, k=50, n=128)
        z = torch.from_numpy(ref["x"]) + t * torch.from_numpy(ref["eps"][1])
        prop = den.proposal(z, torch.full((5,), t))
        draws = authors_draws(prop, 128, 0)
        out = den.estimate(prop, draws).view_as(z).double()
        worst = max(worst, (out - knn_estimate_direct(tiny.images, z, t, 50, draws)).abs().max().item())
    print(f"\nknn vs the float64 formula for fixed draws (k = 50, n = 128, t = 0.002 .. 80): max |diff| {worst:.1e}")


def main() -> None:
    torch.set_num_threads(1)
    ds = load_dataset(SHARED / "data" / "cifar10-train-200-16.zip")
    pca_tables(ds)
    knn_tables(ds)


if __name__ == "__main__":
    main()
