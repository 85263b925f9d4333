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
