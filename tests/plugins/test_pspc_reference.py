"""PSPC-Square and PSPC-Flex against the paper's own outputs (reference/pspc), at every recorded noise level."""

import numpy as np
import pytest
import torch

from pspc_core import create_denoiser

pytestmark = pytest.mark.slow
TOL = 1e-4


@pytest.fixture(scope="module")
def exp_b(shared):
    return dict(np.load(shared / "reference" / "pspc" / "exp_b_cifar16.npz"))


def _rows(den, exp, key):
    for k, t in enumerate(exp["t"]):
        z = torch.from_numpy(exp["z"][k])
        out = den(z, torch.full((z.shape[0],), float(t)))
        yield float(t), (out - torch.from_numpy(exp[key][k])).abs().max().item()


def test_square_matches_paper_on_cifar32(cifar1k, exp_a):
    den = create_denoiser("pspc_sq", dataset=cifar1k)  # default: the paper's CIFAR-10 schedule
    for t, err in _rows(den, exp_a, "pspc_sq"):
        assert err <= TOL, f"t = {t}: max abs error {err}"


def test_square_matches_paper_on_cifar16(cifar200_16, exp_b):
    den = create_denoiser("pspc_sq", dataset=cifar200_16)  # default schedule scaled to 16x16, as the paper ran it
    for t, err in _rows(den, exp_b, "pspc_sq"):
        assert err <= TOL, f"t = {t}: max abs error {err}"


def test_flex_matches_paper_on_cifar16(shared, cifar200_16, exp_b):
    den = create_denoiser("pspc_flex", dataset=cifar200_16, heatmaps=str(shared / "reference" / "pspc" / "heatmaps16.npy"))
    for t, err in _rows(den, exp_b, "pspc_flex"):
        assert err <= TOL, f"t = {t}: max abs error {err}"
    for k, t in enumerate(exp_b["t"]):
        if den.schedule.value(float(t)) < 1:  # at λ = 1 the paper evaluates a single crop
            coverage = den.crops_for(float(t)).coverage.view(16, 16).round().int()
            assert torch.equal(coverage, torch.from_numpy(exp_b["pspc_flex_coverage"][k]))


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_square_matches_every_denoiser_call_of_papers_sampler(cifar200_16, exp_c, solver):
    den = create_denoiser("pspc_sq", dataset=cifar200_16)
    zs, ts, ds = (exp_c[f"pspc_sq_{solver}_call_{key}"] for key in "ztD")
    for i in range(len(zs)):
        err = (den(torch.from_numpy(zs[i]), torch.from_numpy(ts[i])) - torch.from_numpy(ds[i])).abs().max().item()
        assert err <= TOL, f"call {i} (t = {ts[i][0]}): max abs error {err}"
