"""The compiled CPU kernels (composite_cpu: two passes for any crops, one pass for small square crops) against the
float64 per-crop oracle and the torch passes they replace on the CPU: partial blocks, one-channel images, masks
with duplicates and uncovered pixels, the re-shift of a far closer block, and independence from the thread count."""

import pytest
import torch

from oracles import pspc_direct, square_crop_masks
from pspc_core import Dataset, create_denoiser
from pspc_patch import composite, composite_cpu
from pspc_patch.crops import BoxCrops, MaskCrops
from pspc_patch.flex import PSPCFlex


def _data(n, channels=3, R=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, R, R), generator=g, dtype=torch.uint8)


def _latents(images, t, n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = images[:n].double() / 127.5 - 1
    return x + t * torch.randn(x.shape, generator=g, dtype=torch.float64)


KERNELS = {"two_pass": composite_cpu.two_pass, "one_pass": composite_cpu.one_pass_square}


@pytest.fixture(params=list(KERNELS))
def kernel(request):
    """D(z, t) float64 from one compiled kernel alone (numerator / coverage); both are exact for any k."""

    def run(images, z, t, k):
        crops = BoxCrops(images.shape[-1], k)
        c = 1.0 / (2.0 * t**2 * composite.UNIT**2)
        out = torch.from_numpy(KERNELS[request.param](z, composite.pixels_first(images), crops, c))
        return (out / crops.coverage).view_as(z)

    return run


def _oracle(images, z, t, k):
    return pspc_direct(images, z, torch.full((z.shape[0],), t, dtype=torch.float64),
                       square_crop_masks(images.shape[-1], k))


def test_the_cpu_path_is_compiled():
    """numba is a dependency: no silent fallback to the torch passes."""
    assert composite._compiled_kernel(BoxCrops(8, 2)) is composite_cpu.one_pass_square
    assert composite._compiled_kernel(BoxCrops(8, 3)) is composite_cpu.one_pass_square
    assert composite._compiled_kernel(BoxCrops(8, 4)) is composite_cpu.two_pass
    assert composite._compiled_kernel(MaskCrops(torch.eye(64, dtype=torch.bool))) is composite_cpu.two_pass


@pytest.mark.parametrize("t, k, n", [(80.0, 5, 130), (5.3, 7, 300), (1.0, 3, 257), (0.3, 2, 40), (0.05, 3, 129),
                                     (0.002, 3, 200)])
def test_matches_the_float64_oracle(kernel, t, k, n):
    """N around and below the block width (128) and the task split; float64 agreement (measured ~3e-15)."""
    images = _data(n)
    z = _latents(images, t)
    err = (kernel(images, z, t, k) - _oracle(images, z, t, k)).abs().max().item()
    assert err <= 1e-12, f"t = {t}, k = {k}, N = {n}: {err}"


def test_near_ties_at_the_smallest_t(kernel):
    """Images one uint8 step apart in ~5% of values, latents halfway, t = 0.002: logits ~1e5 · d, so any float32
    step (or a careless expansion of the squares) shows; squared differences in float64 do not."""
    g = torch.Generator().manual_seed(5)
    base = torch.randint(0, 255, (6, 3, 8, 8), generator=g, dtype=torch.uint8)
    images = torch.cat([base, base + (torch.rand(base.shape, generator=g) < 0.05).to(torch.uint8)])
    z = (base.double() + 0.5 * (images[6:] - base).double()) / 127.5 - 1
    z = z + 0.002 * torch.randn(z.shape, generator=g, dtype=torch.float64)
    for k in (2, 3, 5):
        assert (kernel(images, z, 0.002, k) - _oracle(images, z, 0.002, k)).abs().max().item() <= 1e-12


def test_one_channel_images_and_one_latent(kernel):
    images = _data(150, channels=1, R=6, seed=3)
    z = _latents(images, 0.4, n=1)
    assert (kernel(images, z, 0.4, 4) - _oracle(images, z, 0.4, 4)).abs().max().item() <= 1e-12


def test_a_far_closer_block_later_in_a_task_is_reshifted(kernel, monkeypatch):
    """One task over three blocks; the latent is image 300 (last block) plus tiny noise, so against the first
    block's minimum its exponent would overflow: the block must be re-shifted to its own minimum."""
    monkeypatch.setattr(composite_cpu, "TASKS", 1)
    monkeypatch.setattr(composite_cpu, "TASK_TARGET", 1)
    images = _data(301, seed=4)
    t = 0.01
    g = torch.Generator().manual_seed(5)
    z = (images[300:].double() / 127.5 - 1) + t * torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64)
    out = kernel(images, z, t, 3)
    assert torch.isfinite(out).all()
    assert (out - _oracle(images, z, t, 3)).abs().max().item() <= 1e-12


@pytest.mark.parametrize("k", [2, 3])
def test_the_denoiser_equals_its_torch_passes(monkeypatch, k):
    """The compiled kernels and the torch passes (used on CUDA, or where numba is missing) agree."""
    data = Dataset(_data(200, seed=6))
    z = _latents(data.images, 0.3).float()
    monkeypatch.setattr(composite, "ENTRY_BUDGET", 0)
    compiled = create_denoiser("pspc_sq", dataset=data, patch_sizes=[k])(z, 0.3)
    monkeypatch.setattr(composite, "_compiled_kernel", lambda crops: None)
    torch_passes = create_denoiser("pspc_sq", dataset=data, patch_sizes=[k])(z, 0.3)
    assert (compiled - torch_passes).abs().max().item() <= 1e-6


def test_results_do_not_depend_on_the_thread_count(kernel):
    images = _data(700, seed=7)
    z = _latents(images, 0.5)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernel(images, z, 0.5, 3)
        torch.set_num_threads(2)
        two = kernel(images, z, 0.5, 3)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def _masks(R, seed):
    """Random crops: blobs around random centres, two identical rows, and two pixels no crop holds."""
    g = torch.Generator().manual_seed(seed)
    i = torch.arange(R)
    yy, xx = torch.meshgrid(i, i, indexing="ij")
    centres = torch.randint(0, R, (R * R, 2), generator=g)
    radius = torch.rand(R * R, 1, 1, generator=g) * 3 + 0.5
    masks = ((yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2) <= radius**2
    masks[1] = masks[0]
    masks[:, 0, 0] = masks[:, R - 1, R - 1] = False
    return masks


@pytest.fixture(params=["kept", "recomputed"])
def mask_pass(request, monkeypatch):
    """Masks over one image range keep pass 1's weights for pass 2 (`_masks_kept`); otherwise, or beyond
    KEPT_MAX, pass 2 recomputes them (`_pass2`). Both must give the same numbers."""
    if request.param == "recomputed":
        monkeypatch.setattr(composite_cpu, "KEPT_MAX", 0)
    return request.param


def _mask_run(images, z, t, masks):
    """(D(z, t) [B, C, R, R] from two_pass alone, covered pixels [R, R])."""
    R = images.shape[-1]
    crops = MaskCrops(masks)
    c = 1.0 / (2.0 * t**2 * composite.UNIT**2)
    out = torch.from_numpy(composite_cpu.two_pass(z, composite.pixels_first(images), crops, c)).view_as(z)
    covered = crops.coverage.view(R, R) > 0
    return out / torch.where(covered, crops.coverage.view(R, R), 1.0), covered


@pytest.mark.parametrize("t, channels, R, n", [(5.0, 3, 8, 300), (0.3, 3, 8, 300), (0.002, 3, 8, 300),
                                               (0.5, 1, 6, 700), (0.002, 2, 7, 1)])
def test_masks_match_the_float64_oracle(t, channels, R, n, mask_pass):
    """PSPC-Flex's crops: merged duplicates count twice, uncovered pixels come back as 0 (the caller fills them).
    N = 300: a full block and a partial one; also one and two channels, odd sizes, one image."""
    images = _data(n, channels=channels, R=R, seed=8)
    z = _latents(images, t, n=min(3, n))
    masks = _masks(R, seed=9)
    mine, covered = _mask_run(images, z, t, masks)
    assert not covered[0, 0] and not covered[R - 1, R - 1]
    ref = pspc_direct(images, z, torch.full((z.shape[0],), t, dtype=torch.float64), masks)
    assert (mine - ref)[..., covered].abs().max().item() <= 1e-12
    assert mine[..., ~covered].abs().max().item() == 0


def test_masks_reshift_a_far_closer_later_block(mask_pass, monkeypatch):
    """One latent, image 300 (in the second block) plus tiny noise: against the first block's reference its
    weights would overflow, so that block is re-shifted, and (kept weights) the first block's are scaled down."""
    monkeypatch.setattr(composite_cpu, "TASK_TARGET", 1)
    images = _data(301, seed=4)
    t = 0.01
    g = torch.Generator().manual_seed(5)
    z = (images[300:].double() / 127.5 - 1) + t * torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64)
    masks = _masks(8, seed=9)
    mine, covered = _mask_run(images, z, t, masks)
    ref = pspc_direct(images, z, torch.full((1,), t, dtype=torch.float64), masks)
    assert torch.isfinite(mine).all()
    assert (mine - ref)[..., covered].abs().max().item() <= 1e-12


def test_flex_equals_its_torch_passes(monkeypatch):
    data = Dataset(_data(200, seed=10))
    z = _latents(data.images, 0.3).float()
    heatmaps = torch.rand(1, 8, 8, 8, 8, generator=torch.Generator().manual_seed(11))
    compiled = PSPCFlex(data, heatmaps, thresholds=[0.3])(z, 0.3)
    monkeypatch.setattr(composite, "_compiled_kernel", lambda crops: None)
    monkeypatch.setattr(composite, "ENTRY_BUDGET", 0)
    torch_passes = PSPCFlex(data, heatmaps, thresholds=[0.3])(z, 0.3)
    assert (compiled - torch_passes).abs().max().item() <= 1e-6


@pytest.mark.parametrize("channels, R, t", [(3, 9, 0.3), (1, 10, 0.002), (3, 11, 5.0)])
def test_fused_three_by_three_pass_matches_the_oracle(channels, R, t):
    """k = 3 takes `_one_pass3`: crop rows whose width is not a multiple of three (a lone crop after the sweeps of
    three), one or three channels, a partial block of lanes, and three latents (a pair and one alone)."""
    images = _data(150, channels=channels, R=R, seed=12)
    z = _latents(images, t)
    crops = BoxCrops(R, 3)
    c = 1.0 / (2.0 * t**2 * composite.UNIT**2)
    out = torch.from_numpy(composite_cpu.one_pass_square(z, composite.pixels_first(images), crops, c))
    assert (out / crops.coverage).view_as(z).sub(_oracle(images, z, t, 3)).abs().max().item() <= 1e-12
