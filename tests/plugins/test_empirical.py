"""The empirical denoiser against the paper's outputs and against the direct (unexpanded) oracle."""

import pytest
import torch

from oracles import empirical_direct
from pspc_core import create_denoiser, edm_schedule


def test_matches_paper_reference_at_every_noise_level(cifar1k, exp_a):
    den = create_denoiser("empirical", dataset=cifar1k)
    for k, t in enumerate(exp_a["t"]):
        out = den(torch.from_numpy(exp_a["z"][k]), torch.full((6,), float(t)))
        err = (out - torch.from_numpy(exp_a["empirical"][k])).abs().max().item()
        assert err <= 1e-4, f"t = {t}: max abs error {err}"


@pytest.mark.parametrize("t", edm_schedule(18).tolist())
def test_matches_direct_oracle_on_random_data(tiny_dataset, t):
    g = torch.Generator().manual_seed(1)
    x = tiny_dataset.images[:6].float() / 127.5 - 1
    z = x + t * torch.randn(x.shape, generator=g)
    den = create_denoiser("empirical", dataset=tiny_dataset, chunk_size=7)
    ref = empirical_direct(tiny_dataset.images, z.double(), torch.full((6,), t, dtype=torch.float64))
    assert (den(z, t) - ref.float()).abs().max().item() <= 1e-5


def test_smallest_noise_level_returns_the_nearest_training_image(tiny_dataset):
    """At t = 0.002 the posterior is a point mass on the nearest image; float32 expansion gets this wrong."""
    x = tiny_dataset.images[[3, 17, 41]].float() / 127.5 - 1
    z = x + 0.002 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    out = create_denoiser("empirical", dataset=tiny_dataset)(z, 0.002)
    assert (out - x).abs().max().item() <= 1e-6


def test_each_latent_uses_its_own_t(tiny_dataset):
    den = create_denoiser("empirical", dataset=tiny_dataset)
    z = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([80.0, 1.0, 0.1, 0.002])
    mixed = den(z, t)
    for i in range(4):
        assert torch.allclose(mixed[i], den(z[i : i + 1], t[i : i + 1])[0], atol=1e-6)


def test_chunk_size_does_not_change_the_result(tiny_dataset):
    z = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(4)) * 2
    a = create_denoiser("empirical", dataset=tiny_dataset, chunk_size=1)(z, 2.0)
    b = create_denoiser("empirical", dataset=tiny_dataset, chunk_size=1000)(z, 2.0)
    assert (a - b).abs().max().item() <= 1e-6


def test_latents_of_another_size_are_an_error(tiny_dataset):
    from pspc_core import ShapeError

    with pytest.raises(ShapeError, match="8x8"):
        create_denoiser("empirical", dataset=tiny_dataset)(torch.zeros(1, 3, 16, 16), 1.0)


# The CPU engine (int8 slices, sliced.py): its float64 output against the float64 oracle, every path of it.

from pspc_core import Dataset  # noqa: E402
from pspc_empirical import sliced  # noqa: E402

needs_int8 = pytest.mark.skipif(not sliced.available(), reason="torch without int8 matrix products on the CPU")


def _engine(dataset, z, t, chunk=None):
    u, h = sliced.int8_images(dataset)
    return torch.from_numpy(sliced.denoise(z, torch.full((z.shape[0],), float(t)), u, h, chunk))


def _oracle64(images, z, t):
    return empirical_direct(images, z.double(), torch.full((z.shape[0],), float(t), dtype=torch.float64)).flatten(1)


@needs_int8
@pytest.mark.parametrize("t", [80.0, 12.9, 5.3, 1.9, 0.6, 0.14, 0.023, 0.002])
@pytest.mark.parametrize("chunk", [None, 13])
def test_sliced_engine_is_within_its_bound_of_the_float64_oracle(t, chunk):
    """Screen final (large t) or finished exactly (small t), weights sliced or gathered: ≤ 5e-8 by construction,
    ~1e-10 measured; chunks of 13 images exercise the running maximum and per-chunk slice counts."""
    g = torch.Generator().manual_seed(int(t * 100))
    data = Dataset(torch.randint(0, 256, (120, 3, 8, 8), generator=g, dtype=torch.uint8))
    x = data.images[:5].float() / 127.5 - 1
    z = x + t * torch.randn(x.shape, generator=g)
    err = (_engine(data, z, t, chunk) - _oracle64(data.images, z, t)).abs().max().item()
    assert err <= 5e-8, f"t = {t}: {err}"


@needs_int8
@pytest.mark.parametrize("t", [0.002, 0.0005])
def test_near_ties_at_the_smallest_t_match_the_float64_oracle(t):
    """Pairs of images one uint8 step apart in ~5% of values, latents halfway between them: the logits (~1e5 per
    data unit²) differ by little, so a float32 screen or an expansion of the squares would pick wrong weights."""
    g = torch.Generator().manual_seed(5)
    base = torch.randint(0, 255, (6, 3, 8, 8), generator=g, dtype=torch.uint8)
    images = torch.cat([base, base + (torch.rand(base.shape, generator=g) < 0.05).to(torch.uint8)])
    z = (base.double() + 0.5 * (images[6:] - base).double()) / 127.5 - 1
    z = (z + t * torch.randn(z.shape, generator=g, dtype=torch.float64)).float()
    ref = _oracle64(images, z, t)
    assert (_engine(Dataset(images), z, t) - ref).abs().max().item() <= 1e-9  # both float64: summation order
    out = create_denoiser("empirical", dataset=Dataset(images))(z, t)
    assert (out.flatten(1).double() - ref).abs().max().item() <= 1e-7


@needs_int8
def test_mixed_noise_levels_use_screen_and_finish_in_one_batch(tiny_dataset):
    z = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([80.0, 0.002, 3.0, 0.01])
    u, h = sliced.int8_images(tiny_dataset)
    zt = z * t[:, None, None, None]
    out = torch.from_numpy(sliced.denoise(zt, t, u, h, None))
    ref = empirical_direct(tiny_dataset.images, zt.double(), t.double()).flatten(1)
    assert (out - ref).abs().max().item() <= 5e-8


@needs_int8
def test_products_split_where_an_int32_sum_could_overflow(tiny_dataset, monkeypatch):
    """INT32_TERMS bounds both the image dimension of one product and the images per chunk."""
    monkeypatch.setattr(sliced, "INT32_TERMS", 50)
    g = torch.Generator().manual_seed(7)
    z = tiny_dataset.images[:3].float() / 127.5 - 1 + 2.0 * torch.randn(3, 3, 8, 8, generator=g)
    tiny = Dataset(tiny_dataset.images.clone())
    assert (_engine(tiny, z, 2.0) - _oracle64(tiny.images, z, 2.0)).abs().max().item() <= 5e-8


def test_float64_path_when_candidates_exceed_the_budget_or_int8_products_are_missing(tiny_dataset, monkeypatch):
    g = torch.Generator().manual_seed(8)
    z = tiny_dataset.images[:3].float() / 127.5 - 1 + 0.002 * torch.randn(3, 3, 8, 8, generator=g)
    ref = _oracle64(tiny_dataset.images, z, 0.002).view_as(z).float()
    monkeypatch.setattr(sliced, "CANDIDATE_BUDGET", 0)
    assert (create_denoiser("empirical", dataset=tiny_dataset)(z, 0.002) - ref).abs().max().item() <= 1e-6
    monkeypatch.setattr(sliced, "available", lambda: False)
    assert (create_denoiser("empirical", dataset=tiny_dataset)(z, 0.002) - ref).abs().max().item() <= 1e-6


def test_the_int8_copy_is_made_once_per_dataset(tiny_dataset):
    u, h = sliced.int8_images(tiny_dataset)
    assert sliced.int8_images(tiny_dataset)[0] is u
    assert u.dtype == torch.int8 and u.shape == (50, 192)
    v = tiny_dataset.images.flatten(1).long()
    assert torch.equal(u.long(), v - 128) and torch.equal(h, ((v - 128) * (v - 127)).sum(1).double())
