"""PSPC-Flex: heatmap crops against the paper's masks and the per-crop oracle; uncovered pixels; bad input."""

import numpy as np
import pytest
import torch

from oracles import empirical_direct, flex_crop_masks_direct, flex_mask_direct, pspc_direct
from pspc_core import ParameterError, ShapeError, create_denoiser
from pspc_patch.masks import flex_masks

R = 8


def _heatmaps(L=3, seed=0):
    """Random smooth-ish local maps [L, R, R, R, R]: a bump around each pixel times positive noise."""
    g = torch.Generator().manual_seed(seed)
    i = torch.arange(R).float()
    dy = (i[:, None, None, None] - i[None, None, :, None]) ** 2
    dx = (i[None, :, None, None] - i[None, None, None, :]) ** 2
    widths = torch.linspace(3.0, 0.7, L)
    bumps = torch.exp(-(dy + dx)[None] / (2 * widths[:, None, None, None, None] ** 2))
    return bumps * (0.5 + torch.rand(L, R, R, R, R, generator=g))


def _latents(dataset, t, n=4, seed=1):
    x = dataset.images[:n].float() / 127.5 - 1
    return x + t * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


def test_masks_keep_the_most_sensitive_pixels_up_to_mass_lambda():
    hm = _heatmaps(1)[0]
    for lam in (1.0, 0.7, 0.35, 0.05):
        masks = flex_masks(hm, lam).view(R, R, R, R)
        for y, x in [(0, 0), (3, 5), (7, 2)]:
            assert torch.equal(masks[y, x], flex_mask_direct(hm[y, x], lam))


def test_masks_equal_the_papers_masks(shared):
    ref = np.load(shared / "reference" / "pspc" / "data.npz")["flex_masks16"]
    hm = torch.from_numpy(np.load(shared / "reference" / "pspc" / "heatmaps16.npy"))
    lam = [1.0] * 7 + [0.7, 0.7, 0.5, 0.4, 0.4, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3]
    for k in range(18):
        assert np.array_equal(flex_masks(hm[k], lam[k]).view(16, 16, 16, 16).numpy(), ref[k]), f"level {k}"


@pytest.mark.parametrize("level,t", [(0, 3.0), (1, 0.4), (2, 0.002)])
def test_matches_per_crop_oracle_on_random_heatmaps(tiny_dataset, level, t):
    hm = _heatmaps(3, seed=level)
    lam = [0.9, 0.5, 0.25]
    from pspc_patch.flex import PSPCFlex

    den = PSPCFlex(tiny_dataset, hm, thresholds=lam, t_min=0.002, t_max=3.0, chunk_size=9)
    assert den.schedule.index(t) == level
    z = _latents(tiny_dataset, t)
    masks = flex_crop_masks_direct(hm[level], lam[level])
    ref = pspc_direct(tiny_dataset.images, z.double(), torch.full((4,), t, dtype=torch.float64), masks)
    assert (den(z, t) - ref.float()).abs().max().item() <= 2e-5


def test_lambda_one_is_the_empirical_denoiser(tiny_dataset):
    from pspc_patch.flex import PSPCFlex

    den = PSPCFlex(tiny_dataset, _heatmaps(2), thresholds=[1.0, 1.0])
    assert den.crops_for(0.5).n_crops == 1  # every crop is the whole image: computed once
    z = _latents(tiny_dataset, 0.5)
    ref = empirical_direct(tiny_dataset.images, z.double(), torch.full((4,), 0.5, dtype=torch.float64))
    assert (den(z, 0.5) - ref.float()).abs().max().item() <= 1e-5


@pytest.mark.parametrize("second_pass", [False, True])
def test_uncovered_pixels_take_the_empirical_estimate(tiny_dataset, second_pass, monkeypatch):
    """Every crop holds only pixels of the left half, so the right half is uncovered (NaN in the paper's code)."""
    from pspc_patch import composite
    from pspc_patch.flex import PSPCFlex

    if second_pass:
        monkeypatch.setattr(composite, "ENTRY_BUDGET", 0)

    hm = _heatmaps(1)
    hm[..., R // 2 :] = 0.0
    den = PSPCFlex(tiny_dataset, hm, thresholds=[0.5])
    z = _latents(tiny_dataset, 0.3)
    out = den(z, 0.3)
    assert den.crops_for(0.3).uncovered.view(R, R)[:, R // 2 :].all()
    t64 = torch.full((4,), 0.3, dtype=torch.float64)
    empirical = empirical_direct(tiny_dataset.images, z.double(), t64).float()
    assert (out[..., R // 2 :] - empirical[..., R // 2 :]).abs().max().item() <= 1e-5
    ref = pspc_direct(tiny_dataset.images, z.double(), t64, flex_crop_masks_direct(hm[0], 0.5)).float()
    assert (out - ref).abs().max().item() <= 2e-5  # the oracle makes the same documented choice
    assert torch.isfinite(out).all()


def test_heatmaps_load_from_npy_and_safetensors(tiny_dataset, tmp_path):
    from safetensors.torch import save_file

    hm = _heatmaps(2)
    np.save(tmp_path / "h.npy", hm.numpy())
    save_file({"heatmaps": hm}, str(tmp_path / "h.safetensors"))
    z = _latents(tiny_dataset, 0.01)
    outs = [create_denoiser("pspc_flex", dataset=tiny_dataset, heatmaps=str(tmp_path / name), thresholds="0.6,0.3")(z, 0.01)
            for name in ("h.npy", "h.safetensors")]
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("change,error,words", [
    (dict(heatmaps=torch.rand(3, R, R, R, R + 1)), ShapeError, "[L, 8, 8, 8, 8]"),
    (dict(heatmaps=torch.rand(3, 4, 4, 4, 4)), ShapeError, "resolution"),
    (dict(thresholds=[0.5, 0.5]), ParameterError, "one threshold per heatmap"),
    (dict(thresholds=[0.5, 0.0, 0.3]), ParameterError, "outside (0, 1]"),
    (dict(thresholds=[0.5, 1.2, 0.3]), ParameterError, "outside (0, 1]"),
    (dict(heatmaps=-torch.rand(3, R, R, R, R)), ParameterError, "negative"),
    (dict(heatmaps=torch.zeros(3, R, R, R, R)), ParameterError, "sums to zero"),
    (dict(thresholds=None), ParameterError, "18 values"),
    (dict(chunk_size=0), ParameterError, "chunk_size"),
])
def test_bad_input_is_one_clear_error_before_any_work(tiny_dataset, change, error, words):
    from pspc_patch.flex import PSPCFlex

    kwargs = dict(heatmaps=torch.rand(3, R, R, R, R), thresholds=[0.5, 0.4, 0.3]) | change
    with pytest.raises(error) as info:
        PSPCFlex(tiny_dataset, **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_missing_heatmaps_file_is_a_parameter_error(tiny_dataset, tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        create_denoiser("pspc_flex", dataset=tiny_dataset, heatmaps=str(tmp_path / "none.npy"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("t", [3.0, 0.002])
def test_cuda_matches_cpu(tiny_dataset, t):
    from pspc_patch.flex import PSPCFlex

    hm = _heatmaps(1)
    hm[..., R // 2 :] = 0.0  # uncovered pixels too
    den = PSPCFlex(tiny_dataset, hm, thresholds=[0.4])
    z = _latents(tiny_dataset, t)
    cpu = den(z, t)
    gpu = den.to("cuda")(z.cuda(), t)
    assert (gpu.cpu() - cpu).abs().max().item() <= 1e-5
