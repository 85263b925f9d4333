"""scale_sweep: every candidate scale at once equals a denoiser built with that single value (random and structured
data, near-ties at t = 0.002, odd sizes, one channel, merged and uncovered flex crops, the torch passes); PSPC-Flex
heatmaps and thresholds on grids of their own."""

import pytest
import torch

from pspc_core import Dataset, ParameterError, edm_schedule
from pspc_patch import sweep
from pspc_patch.flex import PSPCFlex
from pspc_patch.square import PSPCSquare

TOL = 1e-6  # the contract; measured: 0 (bit-identical float32) in these cases
T_VALUES = [80.0, 5.0, 0.3, 0.002]
LAMBDAS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0]


def _images(n, channels=3, R=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, R, R), generator=g, dtype=torch.uint8)


def _near_ties(n=6, R=8, seed=5):
    """Each image and a copy one uint8 step away in ~5% of values; latents halfway between (t = 0.002)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 255, (n, 3, R, R), generator=g, dtype=torch.uint8)
    steps = (torch.rand(base.shape, generator=g) < 0.05).to(torch.uint8)
    x = (base.float() + 0.5 * steps.float()) / 127.5 - 1
    return Dataset(torch.cat([base, base + steps])), x + 0.002 * torch.randn(x.shape, generator=g)


def _latents(images, t, n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = images[torch.arange(n) % len(images)].float() / 127.5 - 1
    return x + t * torch.randn(x.shape, generator=g)


def _heatmaps(R=8, L=1, seed=0):
    """Local bumps around each pixel times positive noise [L, R, R, R, R], narrower at later levels."""
    g = torch.Generator().manual_seed(seed)
    i = torch.arange(R).float()
    d2 = (i[:, None, None, None] - i[None, None, :, None]) ** 2 + (i[None, :, None, None] - i[None, None, None, :]) ** 2
    widths = torch.linspace(2.5, 0.8, L)[:, None, None, None, None]
    return torch.exp(-d2[None] / (2 * widths**2)) * (0.5 + torch.rand(L, R, R, R, R, generator=g))


def _square_error(data, z, t, ks):
    out = PSPCSquare(data, patch_sizes=[3]).scale_sweep(z, t, ks)
    assert out.shape == (len(ks), *z.shape) and out.dtype == torch.float32
    return max((out[i] - PSPCSquare(data, patch_sizes=[k])(z, t)).abs().max().item() for i, k in enumerate(ks))


def _flex_error(data, hm, z, t, lams, **grid):
    out = PSPCFlex(data, hm, thresholds=[0.5], **grid).scale_sweep(z, t, lams)
    assert out.shape == (len(lams), *z.shape) and out.dtype == torch.float32
    return max((out[i] - PSPCFlex(data, hm, thresholds=[v], **grid)(z, t)).abs().max().item()
               for i, v in enumerate(lams))


@pytest.mark.parametrize("t", T_VALUES)
def test_square_sweep_equals_each_single_size_denoiser(t):
    """N = 130: two full blocks and a partial one; sizes in any order, repeated, R included (empirical)."""
    images = _images(130)
    ks = [5, 1, 8, 2, 3, 3, 4, 6, 7]
    assert _square_error(Dataset(images), _latents(images, t), t, ks) <= TOL


def test_square_sweep_resolves_near_ties_at_the_smallest_t():
    data, z = _near_ties()
    assert _square_error(data, z, 0.002, list(range(1, 9))) <= TOL


@pytest.mark.parametrize("t", [0.3, 0.002])
def test_square_sweep_odd_sizes_and_one_channel(t):
    """R = 7, one channel, N = 67, 17 latents (more than one latent group)."""
    images = _images(67, channels=1, R=7, seed=3)
    assert _square_error(Dataset(images), _latents(images, t, n=17), t, list(range(1, 8))) <= TOL


@pytest.mark.parametrize("t", T_VALUES)
def test_flex_sweep_equals_each_single_threshold_denoiser(t):
    images = _images(130)
    assert _flex_error(Dataset(images), _heatmaps(), _latents(images, t), t, LAMBDAS) <= TOL


@pytest.mark.parametrize("t", [0.3, 0.002])
def test_flex_sweep_uncovered_pixels_and_merged_crops(t):
    """Right half in no crop (empirical estimate there); the top rows share one map, so their crops merge."""
    images = _images(70, seed=2)
    hm = _heatmaps(seed=1)
    hm[..., 4:] = 0.0
    hm[:, :2] = hm[:, :1, :1].clone()  # every pixel of rows 0-1 has pixel (0, 0)'s map
    den = PSPCFlex(Dataset(images), hm, thresholds=[0.3])
    assert den.crops_for(t).uncovered.view(8, 8)[:, 4:].all() and den.crops_for(t).multiplicity.max() == 16
    assert _flex_error(Dataset(images), hm, _latents(images, t), t, LAMBDAS) <= TOL


def test_flex_sweep_resolves_near_ties_at_the_smallest_t():
    data, z = _near_ties()
    assert _flex_error(data, _heatmaps(seed=4), z, 0.002, LAMBDAS) <= TOL


def test_flex_sweep_odd_sizes_and_one_channel():
    images = _images(67, channels=1, R=7, seed=3)
    assert _flex_error(Dataset(images), _heatmaps(R=7), _latents(images, 0.3, n=17), 0.3, LAMBDAS) <= TOL


@pytest.mark.parametrize("t", [5.0, 0.002])
def test_torch_passes_equal_the_single_value_denoisers(t, monkeypatch):
    """The CUDA path (whole-tensor torch operations) run on the CPU, with a small chunk size."""
    monkeypatch.setattr(sweep, "_kernels", lambda: None)
    images = _images(70)
    data, z = Dataset(images), _latents(images, t)
    assert _square_error(data, z, t, [1, 2, 3, 5, 8]) <= TOL
    assert _flex_error(data, _heatmaps(), z, t, [0.1, 0.4, 0.9, 1.0], chunk_size=50) <= TOL


def test_flex_sweep_uses_the_heatmap_level_of_its_own_grid():
    """Three heatmap levels on the EDM grid of 3 points: the sweep at t picks the level a single threshold would."""
    images = _images(60)
    hm = _heatmaps(L=3)
    grid = edm_schedule(3, 0.002, 3.0)
    for t in grid.tolist():
        z = _latents(images, t)
        assert _flex_error(Dataset(images), hm, z, t, [0.2, 0.6], t_max=3.0) <= TOL


def test_flex_thresholds_on_another_grid_than_the_heatmaps(tmp_path):
    """Heatmaps stored with their grid (3 levels); thresholds on a 4-point grid of their own; or one for every t."""
    from pspc_patch.heatmap_files import save_heatmaps
    from pspc_patch.masks import flex_masks

    images = _images(60)
    hm = _heatmaps(L=3)
    path = tmp_path / "h.safetensors"
    save_heatmaps(path, hm, torch.tensor([4.0, 1.0, 0.01]), {})
    den = PSPCFlex(Dataset(images), str(path), thresholds=[0.9, 0.6, 0.4, 0.2], t_grid=[10.0, 2.0, 0.5, 0.05])
    for t, level, lam in [(8.0, 0, 0.9), (5.0, 0, 0.6), (1.2, 1, 0.4), (0.6, 1, 0.4), (0.3, 2, 0.4),
                          (0.03, 2, 0.2)]:
        assert (den.levels.index(t), den.schedule.value(t)) == (level, lam), t
        assert torch.equal(den.masks(t), flex_masks(hm[level], lam))
        z = _latents(images, t)
        alone = PSPCFlex(Dataset(images), str(path), thresholds=[lam])
        assert torch.equal(den(z, t), alone(z, t))
    every = PSPCFlex(Dataset(images), hm, thresholds=[0.4])  # no stored grid: the EDM grid of 3 points
    assert [every.schedule.value(t) for t in (80.0, 1.0, 0.002)] == [0.4] * 3
    assert [every.levels.index(t) for t in edm_schedule(3).tolist()] == [0, 1, 2]
    with pytest.raises(ParameterError, match="one threshold per heatmap level"):
        PSPCFlex(Dataset(images), hm, thresholds=[0.4, 0.3])  # neither one per level, one, nor with t_grid
    two = PSPCFlex(Dataset(images), hm, thresholds=[0.4, 0.3], t_grid=[1.0, 0.1])
    assert two.schedule.value(0.2) == 0.3 and two.levels.index(0.002) == 2


@pytest.mark.parametrize("make,values,words", [
    (lambda d: PSPCSquare(d), [0, 3], "does not fit 8x8"),
    (lambda d: PSPCSquare(d), [], "at least one"),
    (lambda d: PSPCFlex(d, _heatmaps(), thresholds=[0.5]), [], "at least one"),
    (lambda d: PSPCFlex(d, _heatmaps(), thresholds=[0.5]), [0.5, 1.5], "outside (0, 1]"),
])
def test_bad_candidates_are_one_line_errors(make, values, words):
    den = make(Dataset(_images(10)))
    with pytest.raises(ParameterError) as info:
        den.scale_sweep(torch.zeros(1, 3, 8, 8), 1.0, values)
    assert words in str(info.value) and "\n" not in str(info.value)
