"""The EDM schedule and the Euler/Heun PF-ODE samplers against the paper's recorded runs."""

import numpy as np
import pytest
import torch

from pspc_core import create_denoiser, edm_schedule, sample
from pspc_core.schedule import nearest_index


def test_schedule_equals_paper_float32_schedule_bitwise(shared):
    ref = np.load(shared / "reference" / "pspc" / "data.npz")["edm_t_schedule_18"]
    assert np.array_equal(edm_schedule(18).numpy(), ref)


def test_schedule_endpoints_and_order():
    t = edm_schedule(7, t_min=0.01, t_max=10, rho=3, dtype=torch.float64)
    assert t[0].item() == pytest.approx(10) and t[-1].item() == pytest.approx(0.01)
    assert bool((t[1:] < t[:-1]).all())


def test_nearest_index_prefers_the_first_on_ties():
    grid = torch.tensor([3.0, 2.0, 1.0])
    assert nearest_index(grid, 2.5) == 0
    assert nearest_index(grid, 0.1) == 2


class Replay:
    """A denoiser that returns the recorded outputs in call order and records its inputs."""

    def __init__(self, outputs):
        self.outputs, self.inputs, self.ts = list(outputs), [], []

    def __call__(self, z, t):
        self.inputs.append(z.clone())
        self.ts.append(t.clone())
        return torch.from_numpy(self.outputs[len(self.inputs) - 1])

    def to(self, device):
        return self


@pytest.mark.parametrize("run", ["empirical_euler", "empirical_heun", "pspc_sq_euler", "pspc_sq_heun"])
def test_sampler_arithmetic_reproduces_the_paper(exp_c, run):
    """Fed the recorded denoiser outputs, the sampler visits the recorded states and ends at the recorded samples."""
    solver = run.rsplit("_", 1)[1]
    replay = Replay(exp_c[f"{run}_call_D"])
    out = sample(replay, torch.from_numpy(exp_c["z_init"]), n_steps=18, solver=solver, progress=False)
    assert len(replay.inputs) == len(exp_c[f"{run}_call_D"]) == (18 if solver == "euler" else 35)
    for i, (z, t) in enumerate(zip(replay.inputs, replay.ts)):
        assert (z - torch.from_numpy(exp_c[f"{run}_call_z"][i])).abs().max().item() <= 1e-4, f"call {i}"
        assert torch.equal(t, torch.from_numpy(exp_c[f"{run}_call_t"][i]))
    assert (out - torch.from_numpy(exp_c[f"{run}_samples"])).abs().max().item() <= 1e-4


def test_empirical_denoiser_calls_match_the_recorded_calls(exp_c, cifar200_16):
    den = create_denoiser("empirical", dataset=cifar200_16)
    for run in ("empirical_euler", "empirical_heun"):
        for z, t, d in zip(exp_c[f"{run}_call_z"], exp_c[f"{run}_call_t"], exp_c[f"{run}_call_D"]):
            out = den(torch.from_numpy(z), torch.from_numpy(t))
            assert (out - torch.from_numpy(d)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_empirical_sampling_end_to_end_memorizes_like_the_paper(exp_c, cifar200_16, solver):
    den = create_denoiser("empirical", dataset=cifar200_16)
    out = sample(den, torch.from_numpy(exp_c["z_init"]), solver=solver, progress=False)
    assert (out - torch.from_numpy(exp_c[f"empirical_{solver}_samples"])).abs().max().item() <= 1e-4


def test_callback_sees_every_denoiser_call_and_heun_costs_2n_minus_1():
    calls = []

    def den(z, t):
        return torch.zeros_like(z)

    sample(den, torch.ones(2, 1, 4, 4), n_steps=5, solver="heun", progress=False,
           callback=lambda i, t, z, d: calls.append(i))
    assert len(calls) == 9


def test_float64_integration_keeps_float64_state():
    out = sample(lambda z, t: z * 0.5, torch.ones(1, 1, 2, 2, dtype=torch.float64), n_steps=4,
                 dtype=torch.float64, progress=False)
    assert out.dtype == torch.float64
