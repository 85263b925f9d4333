"""pca_locality: against the authors' outputs with their stored masks (lukoianov_16.npz), against float64 oracles
with ours, and our masks against theirs; the Gaussian denoiser with an N-1 covariance against their Wiener
filter."""


import numpy as np
import pytest
import torch

from helpers import assert_one_line_error, pspc
from oracles import pca_locality_direct, wiener_mask_direct
from pspc_core import Dataset, ParameterError, ShapeError, create_denoiser

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # thousands of tiny torch calls


@pytest.fixture(scope="module")
def ref(shared):
    return dict(np.load(shared / "reference" / "peers" / "lukoianov_16.npz"))


@pytest.fixture(scope="module")
def stored_masks(ref, tmp_path_factory):
    """Their masks as a masks file (t [4], masks [4, D, D] bool)."""
    D = int(ref["mask_shape"][0])
    masks = np.stack([np.unpackbits(m)[: D * D].reshape(D, D).astype(bool) for m in ref["mask_packed"]])
    path = tmp_path_factory.mktemp("masks") / "lukoianov_masks.npz"
    np.savez(path, t=ref["t"], masks=masks)
    return path, torch.from_numpy(masks)


def small_set(seed=0, n=40, channels=3, resolution=6):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, channels, 1, 1), generator=g)  # correlated pixels: local, non-trivial masks
    noise = torch.randint(-40, 41, (n, channels, resolution, resolution), generator=g)
    return Dataset((base + noise).clamp(0, 255).to(torch.uint8))


# ---------------------------------------------------------------------------------------------------------------
# registration and parameters


def test_preset_holds_the_authors_cifar10_threshold():
    from pspc_core import get_preset

    preset = get_preset("pca_locality_cifar10")
    assert preset.denoiser == "pca_locality" and preset.params["threshold"] == 0.05


def _masks_file(tmp_path, **arrays):
    path = tmp_path / "m.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("params,error,words", [
    (dict(threshold=0.0), ParameterError, "threshold τ = 0.0 is outside (0, 1]"),
    (dict(threshold=1.5), ParameterError, "outside (0, 1]"),
    (dict(temperature=0.0), ParameterError, "temperature = 0.0 must be positive"),
    (dict(temperature=-1.0), ParameterError, "must be positive"),
    (dict(masks="missing.npz"), ParameterError, "does not exist"),
])
def test_bad_parameters_are_one_line_errors(params, error, words):
    with pytest.raises(error) as info:
        create_denoiser("pca_locality", dataset=small_set(), **params)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("arrays,error,words", [
    (dict(t=np.ones(2), masks=np.ones((2, 10, 10), bool)), ShapeError, "masks [L, 108, 108]"),
    (dict(t=np.ones(3), masks=np.ones((2, 108, 108), bool)), ShapeError, "t (3,)"),
    (dict(t=np.ones(2), masks=np.ones((2, 108, 108), np.uint8)), ShapeError, "store them as bool"),
    (dict(masks=np.ones((2, 108, 108), bool)), ParameterError, "lacks t"),
])
def test_bad_masks_files_are_one_line_errors(tmp_path, arrays, error, words):
    with pytest.raises(error) as info:
        create_denoiser("pca_locality", dataset=small_set(), masks=_masks_file(tmp_path, **arrays))
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("content,words", [
    ("npy", "not an .npz archive"),  # np.load would hand back the array itself
    ("text", "not an .npz archive"),  # np.load would take it for a pickle
    ("garbled", "unreadable array"),
])
def test_masks_files_that_are_not_npz_archives_are_one_line_errors(tmp_path, content, words):
    import zipfile

    path = tmp_path / "m.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones((1, 108, 108), bool))
    elif content == "text":
        path.write_text("t,masks\n")
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("t.npy", b"\x93NUMPY garbage")
            z.writestr("masks.npy", b"\x93NUMPY garbage")
    with pytest.raises(ParameterError) as info:
        create_denoiser("pca_locality", dataset=small_set(), masks=path)
    assert words in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# the authors' outputs, with their masks


def test_matches_the_authors_exact_softmax_with_their_masks(ref, peers200, stored_masks):
    den = create_denoiser("pca_locality", dataset=peers200, masks=stored_masks[0])
    for i, t in enumerate(ref["t"]):
        err = (den(torch.from_numpy(ref["z"][i]), float(t)) - torch.from_numpy(ref["pca_bsN"][i])).abs().max().item()
        assert err <= (1e-4 if t >= 0.3 else 5e-4), (t, err)


def test_matches_the_float64_oracle_with_their_masks(ref, peers200, stored_masks):
    den = create_denoiser("pca_locality", dataset=peers200, masks=stored_masks[0])
    for i, t in enumerate(ref["t"]):
        z = torch.from_numpy(ref["z"][i])
        oracle = pca_locality_direct(peers200.images, z, float(t), stored_masks[1][i])
        assert (den(z, float(t)).double() - oracle).abs().max().item() <= 1e-6, t


def test_their_batch_size_quirk_is_a_mean_of_per_batch_softmax_means(ref, peers200, stored_masks):
    """pca_bs64 (their CIFAR-10 batch size; N = 200 makes batches 64, 64, 64, 8) averages each batch's own
    softmax mean: reproduced here by the oracle per batch, and far from the exact softmax we compute."""
    i, t = 1, float(ref["t"][1])
    z, mask = torch.from_numpy(ref["z"][i]), stored_masks[1][i]
    per_batch = [pca_locality_direct(peers200.images[s : s + 64], z, t, mask) for s in range(0, 200, 64)]
    quirk = torch.stack(per_batch).mean(0)
    assert (quirk - torch.from_numpy(ref["pca_bs64"][i]).double()).abs().max().item() <= 1e-4
    assert (torch.from_numpy(ref["pca_bsN"][i]) - torch.from_numpy(ref["pca_bs64"][i])).abs().max().item() > 0.1


# ---------------------------------------------------------------------------------------------------------------
# our masks


def _float32_ratios(images_u8, alpha_bar: float) -> torch.Tensor:
    """W / diag W as their float32 pipeline computes it (float32 N-1 covariance, float32 SVD, U diag Vh)."""
    x = images_u8.flatten(1).float() / 127.5 - 1
    xc = x - x.sum(0) / x.shape[0]
    U, lam, Vh = torch.linalg.svd(xc.T @ xc / (x.shape[0] - 1))
    a = torch.tensor(alpha_bar, dtype=torch.float32)
    W = U @ torch.diag(a * lam / ((1 - a) + a * lam)) @ Vh
    return W / W.diagonal()[:, None]


def test_our_masks_differ_from_theirs_only_within_float32_error_of_the_threshold(ref, peers200, stored_masks):
    """Their masks binarise a float32 SVD. Every entry where ours (float64) differs has a ratio |W/diag W| that
    their float32 pipeline, run here, moves across the threshold: |ratio - τ max| ≤ max |ratio32 - ratio|.
    At t = 0.01 that band is wide (float32 null-space eigenvalues ~1e-6 next to t² = 1e-4)."""
    from pspc_gaussian.eigen import covariance_eigen
    from pspc_pca_locality.masks import locality_mask, wiener_ratio

    _, evals, vecs = covariance_eigen(peers200, ddof=1)
    counts = []
    for i, t in enumerate(ref["t"]):
        ratio = wiener_ratio(evals, vecs, float(t)).abs()
        threshold = 0.05 * ratio.max()
        flips = locality_mask(evals, vecs, float(t), 0.05) != stored_masks[1][i]
        band = (_float32_ratios(peers200.images, float(ref["alpha_bar"][i])).double().abs() - ratio).abs().max()
        near = (ratio - threshold).abs() <= band
        assert bool((near | ~flips).all()), t
        counts.append(int(flips.sum()))
    assert counts[0] < 20_000 and counts[1] < 100 and counts[2] < 20 and counts[3] < 10, counts


@pytest.mark.parametrize("t", [0.002, 0.01, 0.3, 2.0, 20.0])
def test_our_masks_match_a_direct_float64_solve(peers200, t):
    """W = Σ(Σ + t²I)⁻¹ by a dense solve instead of the Gram-matrix eigendecomposition: the same mask."""
    den = create_denoiser("pca_locality", dataset=peers200)
    assert torch.equal(den.mask(t), wiener_mask_direct(peers200.images, t, 0.05))


@pytest.mark.parametrize("slack", [None, 1e6, 0.0])
def test_the_float32_screen_decides_every_entry_as_the_float64_ratios_do(monkeypatch, slack):
    """The CPU's masks come from a float32 Wiener matrix and its error bound, with float64 dot products where the
    bound cannot decide; the float64 ratios (`wiener_ratio`) give the same masks at five t and four τ, τ = 1 (the
    largest ratios only) and constant pixels included. A bound made huge (every entry recomputed) gives them too, and
    one made 0 (float32 decides alone) does not: the recomputed entries are what keeps the screen exact."""
    import pspc_pca_locality.mask_screen as screen
    from pspc_gaussian.eigen import covariance_eigen
    from pspc_pca_locality.masks import locality_mask, wiener_ratio

    g = torch.Generator().manual_seed(11)
    images = small_set(11, n=300, resolution=8).images.clone()
    images[:, 0, 3, 3] = 17  # a constant pixel: an empty row
    images[: 150, 2] = (images[: 150, 2].int() // 4 + torch.randint(0, 3, (150, 8, 8), generator=g)).to(torch.uint8)
    _, evals, vecs = covariance_eigen(Dataset(images), ddof=1)
    if slack is not None:
        monkeypatch.setattr(screen, "SLACK", slack)
    differs = 0
    for t in (0.002, 0.05, 0.5, 3.0, 80.0):
        ratio = wiener_ratio(evals, vecs, t).abs_()
        for tau in (0.002, 0.05, 0.3, 1.0):
            differs += int((locality_mask(evals, vecs, t, tau) != (ratio >= tau * ratio.max())).sum())
    assert (differs > 0) if slack == 0.0 else (differs == 0), differs


@pytest.mark.parametrize("channels, resolution", [(3, 5), (1, 9), (2, 8)])
def test_the_cpu_plan_lists_each_columns_differences_from_its_parent(channels, resolution):
    """The compiled kernel's plan (from the mask's bits): every column in order, the members it adds to and
    removes from its parent's (ascending), the parent an earlier column or none; D = 75, 81, 128 bits (word
    boundaries inside and at the end), empty and full columns included."""
    from pspc_pca_locality.kernel_cpu import MaskPlan

    D = channels * resolution**2
    g = torch.Generator().manual_seed(D)
    mask = torch.rand(D, D, generator=g) < torch.rand(1, D, generator=g)  # column densities 0 .. 1
    mask[:, 0], mask[:, -1] = False, True
    plan = MaskPlan(mask, channels, resolution)
    cols = mask.T.numpy()
    seen = set()
    for j, m in enumerate(plan.order):
        p = plan.parent[m]
        assert p == -1 or p in seen
        above = cols[p] if p >= 0 else np.zeros(D, bool)
        added = plan.add_idx[plan.add_ptr[j] : plan.add_ptr[j + 1]]
        removed = plan.sub_idx[plan.sub_ptr[j] : plan.sub_ptr[j + 1]]
        assert np.array_equal(added, np.flatnonzero(cols[m] & ~above))
        assert np.array_equal(removed, np.flatnonzero(above & ~cols[m]))
        assert len(added) + len(removed) <= cols[m].sum()
        seen.add(m)
    assert sorted(seen) == list(range(D)) and plan.members == int(mask.sum())


def test_the_cpu_kernel_gives_a_latent_the_same_float64_bits_in_any_batch():
    """The kernel computes latents in groups (every size 1 .. 6 below): each latent's float64 output is the same,
    bit for bit (the float32 outputs of the denoiser would hide a last-bit change), whatever batch it came in.
    N = 300: each task's image range holds a full block of images and a partial one."""
    from pspc_pca_locality.kernel_cpu import MaskPlan

    data = small_set(6, n=300)
    g = torch.Generator().manual_seed(6)
    mask = torch.rand(108, 108, generator=g) < torch.rand(1, 108, generator=g)
    plan = MaskPlan(mask, 3, 6)
    z = torch.randn(13, 108, generator=g, dtype=torch.float64)
    pixels = data.images.reshape(300, -1).T.contiguous()
    alone = torch.cat([plan(z[i : i + 1], pixels, 0.7) for i in range(13)]).numpy().view(np.int64)
    for size in (2, 3, 6, 9, 13):  # groups of 2; 3; 6; 4 and 5; 4, 4 and 5
        assert np.array_equal(plan(z[:size], pixels, 0.7).numpy().view(np.int64), alone[:size]), size


def test_the_masks_do_not_take_the_float32_screen_under_reduced_matmul_precision(monkeypatch):
    """bfloat16 or TF32 products would break the screen's error bound: then the ratios are float64 throughout."""
    import pspc_pca_locality.mask_screen as screen
    from pspc_gaussian.eigen import covariance_eigen
    from pspc_pca_locality.masks import locality_mask

    _, evals, vecs = covariance_eigen(small_set(12), ddof=1)
    before = locality_mask(evals, vecs, 1.0, 0.05)
    monkeypatch.setattr(screen, "screened_masks", lambda *args: pytest.fail("the screen ran"))
    torch.set_float32_matmul_precision("medium")
    try:
        assert torch.equal(locality_mask(evals, vecs, 1.0, 0.05), before)
    finally:
        torch.set_float32_matmul_precision("highest")


@pytest.mark.parametrize("t", [0.002, 0.01, 0.3, 2.0, 20.0])
def test_matches_the_float64_oracle_with_our_masks(ref, peers200, t):
    den = create_denoiser("pca_locality", dataset=peers200)
    x = torch.from_numpy(ref["x"])
    z = x + t * torch.from_numpy(ref["eps"][1])
    oracle = pca_locality_direct(peers200.images, z, t, den.mask(t))
    assert (den(z, t).double() - oracle).abs().max().item() <= 1e-6


def test_wiener_is_the_gaussian_denoiser_with_an_n_minus_1_covariance(ref, peers200):
    """Their Wiener filter (float32 SVD): where its null space does not matter (t ≥ 0.3) it is ours with
    unbiased=true; with the population covariance (divisor N) it is not."""
    unbiased = create_denoiser("gaussian", dataset=peers200, unbiased=True)
    population = create_denoiser("gaussian", dataset=peers200)
    for i, t in enumerate(ref["t"]):
        if t < 0.3:
            continue
        z, theirs = torch.from_numpy(ref["z"][i]), torch.from_numpy(ref["wiener"][i])
        assert (unbiased(z, float(t)) - theirs).abs().max().item() <= 1e-4
        assert (population(z, float(t)) - theirs).abs().max().item() > 5e-4


# ---------------------------------------------------------------------------------------------------------------
# behaviour


@pytest.mark.parametrize("channels, resolution", [(3, 6), (1, 9), (2, 8)])
def test_compiled_and_dense_paths_agree_with_the_oracle_at_any_temperature(channels, resolution):
    from pspc_pca_locality.softmax_dense import masked_softmax_dense

    data = small_set(1, channels=channels, resolution=resolution)
    den = create_denoiser("pca_locality", dataset=data, threshold=0.2, temperature=0.7)
    x = data.images[:3].float() / 127.5 - 1
    for t in (0.05, 1.0, 10.0):
        z = x + t * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
        mask = den.mask(t)
        oracle = pca_locality_direct(data.images, z, t, mask, temperature=0.7)
        dense = masked_softmax_dense(z.flatten(1).double(), data.images.flatten(1), mask, 1 / (2 * t * t * 0.7), 7)
        assert (den(z, t).double() - oracle).abs().max().item() <= 1e-6
        assert (dense.view_as(z) - oracle).abs().max().item() <= 1e-12


def test_the_torch_path_cuda_takes_gives_the_compiled_paths_output(monkeypatch):
    """Where numba is missing, and on CUDA, the denoiser takes the dense torch path: the same outputs."""
    import pspc_pca_locality.denoiser as module

    data = small_set(9)
    z = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(10))
    t = torch.tensor([0.05, 0.05, 3.0, 40.0])
    compiled = create_denoiser("pca_locality", dataset=data)(z, t)
    monkeypatch.setattr(module, "_compiled_plan", lambda *args: None)
    dense = create_denoiser("pca_locality", dataset=data)
    assert isinstance(dense._plan(3.0), torch.Tensor)
    assert (dense(z, t) - compiled).abs().max().item() <= 1e-6


def test_a_threshold_sweep_gives_each_thresholds_own_denoiser(tmp_path):
    """`scale_sweep` (what `pspc calibrate` calls) shares the Wiener matrix across the τ tried: each output is
    the denoiser built with that τ alone, bit for bit, at any temperature, on two batches in turn at one level;
    with a masks file every τ gives the file's mask; a τ outside (0, 1] is a one-line error."""
    data = small_set(13)
    z = torch.randn(6, 3, 6, 6, generator=torch.Generator().manual_seed(14))
    taus = [0.01, 0.05, 0.3, 1.0]
    sweeper = create_denoiser("pca_locality", dataset=data, threshold=taus, temperature=0.7)
    for t, batch in ((0.05, z), (2.0, z[:3]), (2.0, z[3:]), (40.0, z)):
        out = sweeper.scale_sweep(batch, t, taus)
        for tau, got in zip(taus, out):
            alone = create_denoiser("pca_locality", dataset=data, threshold=tau, temperature=0.7)
            assert torch.equal(got, alone(batch, t)), (t, tau)
    with pytest.raises(ParameterError, match="outside"):
        sweeper.scale_sweep(z, 1.0, [0.05, 0.0])
    den = create_denoiser("pca_locality", dataset=data)
    path = _masks_file(tmp_path, t=np.array([1.0]), masks=den.mask(1.0).numpy()[None])
    fixed = create_denoiser("pca_locality", dataset=data, masks=path)
    assert all(torch.equal(o, fixed(z, 3.0)) for o in fixed.scale_sweep(z, 3.0, [0.02, 0.5]))


def test_each_latent_uses_its_own_t_and_the_batch_does_not_matter():
    data = small_set(3)
    den = create_denoiser("pca_locality", dataset=data)
    z = torch.randn(5, 3, 6, 6, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0.1, 2.0, 0.1, 30.0, 2.0])
    whole = den(z, t)
    assert torch.equal(whole, torch.cat([den(z[i : i + 1], t[i : i + 1]) for i in range(5)]))


def test_a_masks_file_serves_the_nearest_noise_level(tmp_path):
    data = small_set(5)
    den = create_denoiser("pca_locality", dataset=data)
    masks = np.stack([den.mask(0.1).numpy(), den.mask(5.0).numpy()])
    path = _masks_file(tmp_path, t=np.array([0.1, 5.0]), masks=masks)
    fixed = create_denoiser("pca_locality", dataset=data, masks=path)
    z = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(6))
    assert torch.equal(fixed.mask(0.3), den.mask(0.1)) and torch.equal(fixed.mask(4.0), den.mask(5.0))
    assert (fixed(z, 0.12) - pca_locality_direct(data.images, z, 0.12, den.mask(0.1))).abs().max().item() <= 1e-6


def test_a_constant_pixel_gets_its_constant():
    images = small_set(7).images.clone()
    images[:, 1, 2, 3] = 200  # the same in every training image
    den = create_denoiser("pca_locality", dataset=Dataset(images))
    z = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(8))
    out = den(z, 1.0)
    assert bool(torch.isfinite(out).all()) and torch.allclose(out[:, 1, 2, 3], torch.tensor(200 / 127.5 - 1))


def test_cli_denoise_and_a_bad_threshold(tmp_path, capsys, shared):
    data = shared / "data" / "cifar10-train-200-16.zip"
    code, out, err = pspc(capsys, "denoise", "-d", "pca_locality", "--data", data, "--n_samples", 4,
                          "--outdir", tmp_path, "--quiet")
    assert code == 0, err
    assert np.isfinite(np.load(tmp_path / "pca_locality_outputs_t_09_of_18.npy")).all()
    code, _, err = pspc(capsys, "denoise", "-d", "pca_locality", "-p", "threshold=2", "--data", data, "--quiet")
    assert_one_line_error(code, err, "threshold τ = 2.0 is outside (0, 1]")
