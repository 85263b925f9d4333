"""PSPC-Square against the per-crop oracle (random data, random patch sizes), and its schedule lookup."""

import pytest
import torch

from oracles import empirical_direct, pspc_direct, square_crop_masks
from pspc_core import create_denoiser, edm_schedule
from pspc_patch import composite
from pspc_patch.paper_schedules import PAPER_CIFAR10_PATCH_SIZES, scaled_patch_sizes


def _latents(dataset, t, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = dataset.images[:n].float() / 127.5 - 1
    return x + t * torch.randn(x.shape, generator=g)


def _oracle(dataset, z, t, k):
    t64 = torch.full((z.shape[0],), float(t), dtype=torch.float64)
    return pspc_direct(dataset.images, z.double(), t64, square_crop_masks(dataset.resolution, k)).float()


@pytest.mark.parametrize("t", [80.0, 5.3, 0.3, 0.002])
def test_matches_per_crop_oracle_for_random_patch_sizes(tiny_dataset, t):
    k = int(torch.randint(1, 9, (1,), generator=torch.Generator().manual_seed(int(t * 1000))))
    z = _latents(tiny_dataset, t)
    den = create_denoiser("pspc_sq", dataset=tiny_dataset, patch_sizes=[k], chunk_size=7)
    err = (den(z, t) - _oracle(tiny_dataset, z, t, k)).abs().max().item()
    assert err <= 2e-5, f"k = {k}, t = {t}: max abs error {err}"


@pytest.mark.parametrize("t", [1.0, 0.05])
def test_dense_second_pass_equals_sparse_scatter(tiny_dataset, t, monkeypatch):
    monkeypatch.setattr(composite, "_compiled_kernel", lambda crops: None)  # the torch passes (CUDA)
    den = create_denoiser("pspc_sq", dataset=tiny_dataset, patch_sizes=[3], chunk_size=16)
    z = _latents(tiny_dataset, t)
    sparse = den(z, t)
    monkeypatch.setattr(composite, "ENTRY_BUDGET", 0)  # forces pass 2 over the data
    dense = den(z, t)
    assert (sparse - dense).abs().max().item() <= 1e-6
    assert (dense - _oracle(tiny_dataset, z, t, 3)).abs().max().item() <= 2e-5


def test_full_size_patch_is_the_empirical_denoiser(tiny_dataset):
    z = _latents(tiny_dataset, 0.5)
    out = create_denoiser("pspc_sq", dataset=tiny_dataset, patch_sizes=[8])(z, 0.5)
    ref = empirical_direct(tiny_dataset.images, z.double(), torch.full((4,), 0.5, dtype=torch.float64))
    assert (out - ref.float()).abs().max().item() <= 1e-5


def test_one_pixel_patches_denoise_each_pixel_independently(tiny_dataset):
    """k = 1: every pixel is its own crop, so each output pixel is a posterior over that pixel's values alone."""
    z = _latents(tiny_dataset, 0.2, n=2)
    out = create_denoiser("pspc_sq", dataset=tiny_dataset, patch_sizes=[1])(z, 0.2)
    x = tiny_dataset.images[:, :, 5, 2]  # [N, C] at pixel (5, 2)
    ref = empirical_direct(x, z[:, :, 5, 2].double(), torch.full((2,), 0.2, dtype=torch.float64))
    assert (out[:, :, 5, 2] - ref.float()).abs().max().item() <= 1e-6


def test_result_does_not_depend_on_chunk_size(tiny_dataset):
    z = _latents(tiny_dataset, 0.1)
    outs = [create_denoiser("pspc_sq", dataset=tiny_dataset, patch_sizes=[4], chunk_size=c)(z, 0.1) for c in (1, 13, 10**6)]
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-6
    assert (outs[0] - outs[2]).abs().max().item() <= 1e-6


def test_each_latent_uses_the_patch_size_of_its_own_t(tiny_dataset):
    sizes = [8, 8, 6, 6, 4, 4, 2, 2, 1]
    den = create_denoiser("pspc_sq", dataset=tiny_dataset, patch_sizes=sizes)
    grid = edm_schedule(len(sizes))
    t = torch.stack([grid[0], grid[3], grid[8], grid[3]])
    z = _latents(tiny_dataset, 1.0)
    mixed = den(z, t)
    for i in range(4):
        alone = den(z[i : i + 1], t[i : i + 1])
        assert (mixed[i] - alone[0]).abs().max().item() <= 1e-6
    assert {den.patch_size(float(v)) for v in t} == {8, 6, 1}


def test_schedule_serves_a_sampler_with_any_number_of_steps(tiny_dataset):
    """Patch size comes from the nearest point of the schedule's own grid, not from the sampler's step index."""
    sizes = [8, 7, 6, 5, 4, 3, 2, 1]
    den = create_denoiser("pspc_sq", dataset=tiny_dataset, patch_sizes=sizes)
    own = edm_schedule(len(sizes))
    for t in edm_schedule(40).tolist():
        nearest = int(torch.argmin((own - t).abs()))
        assert den.patch_size(t) == sizes[nearest]


def test_default_schedule_is_the_papers_cifar10_one_scaled_to_the_resolution():
    assert scaled_patch_sizes(32) == list(PAPER_CIFAR10_PATCH_SIZES)
    # the paper's own 16x16 runs use exactly this schedule (reference/pspc manifest)
    assert scaled_patch_sizes(16) == [16] * 7 + [12, 8, 6, 4, 3, 2, 2, 2, 2, 2, 2]
    assert all(1 <= k <= 8 for k in scaled_patch_sizes(8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tiny_dataset):
    den = create_denoiser("pspc_sq", dataset=tiny_dataset, patch_sizes=[3])
    z = _latents(tiny_dataset, 0.1)
    cpu = den(z, 0.1)
    gpu = den.to("cuda")(z.cuda(), 0.1)
    assert gpu.device.type == "cuda"
    assert (gpu.cpu() - cpu).abs().max().item() <= 1e-5


def test_near_ties_at_the_smallest_t_match_the_float64_oracle():
    """At t = 0.002 logits are ~1e5 · d: images one uint8 step apart are near-ties, and a float32 distance error
    of ~1e-7 would move the output by ~1e-4. The kept entries are recomputed in float64, as the oracle does."""
    from pspc_core import Dataset

    g = torch.Generator().manual_seed(5)
    base = torch.randint(0, 255, (6, 3, 8, 8), generator=g, dtype=torch.uint8)
    steps = (torch.rand(base.shape, generator=g) < 0.05).to(torch.uint8)
    data = Dataset(torch.cat([base, base + steps]))  # each image and a copy one step away in ~5% of values
    x = (base.float() + 0.5 * steps.float()) / 127.5 - 1  # latents halfway between the two
    t = 0.002
    z = x + t * torch.randn(x.shape, generator=g)
    for k in (2, 3, 5):
        out = create_denoiser("pspc_sq", dataset=data, patch_sizes=[k], chunk_size=5)(z, t)
        ref = pspc_direct(data.images, z.double(), torch.full((6,), t, dtype=torch.float64), square_crop_masks(8, k))
        assert (out.double() - ref).abs().max().item() <= 1e-6, f"k = {k}"


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7, 8, 13, 23, 32])
def test_window_sums_have_no_cancellation(k):
    """float32 doubling window sums of non-negative terms of very different sizes stay within their tree bound."""
    from pspc_patch.window_sums import tree_depth, window_sums

    g = torch.Generator().manual_seed(k)
    a = torch.rand(32, 6, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(-6, 6, (32, 6), generator=g)
    out = window_sums(a.float(), k, 0).double()
    ref = torch.stack([a[u : u + k].sum(0) for u in range(32 - k + 1)])
    assert ((out - ref).abs() / ref).max().item() <= (tree_depth(k) + 1) * 2.0**-24
