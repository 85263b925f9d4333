"""Our EDM networks against the official code's outputs (../shared/reference/edm; docs/edm-networks.md).

Tolerance: 1e-5·(1 + σ) per output, the size of float32 reordering alone (reference README).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pspc_core import create_denoiser
from pspc_core.errors import ShapeError
from pspc_core.sampler import sample
from pspc_core.schedule import edm_schedule
from pspc_network import load_network, save_safetensors
from pspc_network.denoiser import NetworkDenoiser

from helpers import SHARED

REF = SHARED / "reference" / "edm"
NAMES = ["edm-ddpmpp-uncond-32", "vp-ddpmpp-uncond-32", "edm-adm-cond-16"]


@pytest.fixture(scope="module")
def ref_dir() -> Path:
    if not REF.is_dir():
        pytest.skip("../shared/reference/edm is not beside this checkout")
    return REF


@pytest.fixture(scope="module", params=NAMES)
def case(request, ref_dir, tmp_path_factory):
    """(name, network loaded through our .safetensors, reference arrays, checkpoint path)."""
    from safetensors.torch import load_file

    name = request.param
    config = json.loads((ref_dir / f"{name}.json").read_text())
    path = tmp_path_factory.mktemp("nets") / f"{name}.safetensors"
    save_safetensors(config, load_file(ref_dir / f"{name}.safetensors"), path)
    arrays = {k: torch.from_numpy(v) for k, v in np.load(ref_dir / f"{name}.npz").items()}
    return name, load_network(path), arrays, path


def tolerance(sigma: torch.Tensor) -> torch.Tensor:
    return (1e-5 * (1 + sigma.double())).reshape(-1, 1, 1, 1)


def assert_close(got: torch.Tensor, want: torch.Tensor, sigma: torch.Tensor) -> None:
    err = (got.double() - want.double()).abs()
    assert bool((err <= tolerance(sigma)).all()), f"max error {err.amax((1, 2, 3)).tolist()} at σ={sigma.tolist()}"


def labels(arrays: dict) -> dict:
    return {"class_labels": arrays["class_labels"]} if "class_labels" in arrays else {}


def test_outputs_match_official(case):
    name, net, a, _ = case
    with torch.no_grad():
        assert_close(net(a["x"], a["sigma"], **labels(a)), a["out"], a["sigma"])


def test_preconditioning_and_inner_network_match_official(case):
    name, net, a, _ = case
    sigma = a["sigma"].reshape(-1, 1, 1, 1)
    c_skip, c_out, c_in, c_noise = net.scalings(sigma)
    assert torch.allclose(c_noise.flatten(), a["c_noise"], rtol=1e-6, atol=1e-6)
    assert torch.allclose(c_in * a["x"], a["model_in"], rtol=1e-6, atol=1e-6)
    class_labels = a["class_labels"] if "class_labels" in a else None
    with torch.no_grad():
        F_x = net.model(a["model_in"], a["c_noise"], class_labels=class_labels)
    assert torch.allclose(F_x, a["F_x"], rtol=1e-5, atol=1e-5), (F_x - a["F_x"]).abs().max()


def test_conditional_network_without_labels_matches_official(case):
    name, net, a, _ = case
    if "out_no_labels" not in a:
        pytest.skip(f"{name} is unconditional")
    with torch.no_grad():
        out = net(a["x"], a["sigma"])
    assert_close(out, a["out_no_labels"], a["sigma"])
    assert not torch.allclose(out, a["out"], atol=1e-3)  # the labels do matter


def test_augment_labels_path_matches_official(case):
    name, net, a, _ = case
    if "out_augment" not in a:
        pytest.skip(f"{name} has no augment labels")
    with torch.no_grad():
        out = net(a["x"], a["sigma"], augment_labels=a["augment_labels"], **labels(a))
    assert_close(out, a["out_augment"], a["sigma"])
    assert not torch.allclose(out, a["out"], atol=1e-5)  # the augment path does matter


def test_heun_sampler_follows_official_edm_sampler(case):
    """EDM's generate.py conventions (§4.3): σ range clipped to the net's, x₀ = latents·t₀ in float64, Heun."""
    name, net, a, _ = case
    class_label = a["sampler_class_labels"].argmax(1) if "sampler_class_labels" in a else "none"
    den = NetworkDenoiser(network=net, class_label=class_label)
    n = int(a["sampler_num_steps"])
    t_min, t_max = max(0.002, den.sigma_min), min(80.0, den.sigma_max)
    t_steps = den.round_sigma(edm_schedule(n, t_min, t_max, 7.0, dtype=torch.float64))
    z_init = a["sampler_latents"].to(torch.float64) * t_steps[0]
    with torch.no_grad():
        out = sample(den, z_init, n, solver="heun", t_steps=t_steps, dtype=torch.float64, progress=False)
    ref = a["sampler_out"]
    err = (out - ref).abs()
    assert bool((err <= 1e-5 * (1 + ref.abs())).all()), f"max error {err.max():.3g}"


def test_denoiser_from_checkpoint_calls_the_network_at_sigma_t(case):
    name, net, a, path = case
    kwargs = {"class_label": "7"} if net.label_dim else {}
    den = create_denoiser("network", checkpoint=str(path), **kwargs)
    assert (den.resolution, den.channels, den.label_dim) == (net.img_resolution, net.img_channels, net.label_dim)
    x, t = a["x"][:2], torch.tensor([0.5, 2.0])
    one_hot = torch.nn.functional.one_hot(torch.tensor([7, 7]), net.label_dim).float() if net.label_dim else None
    with torch.no_grad():
        assert torch.equal(den(x, t), net(x, t, one_hot))


def test_denoiser_rejects_latents_of_another_size(case):
    name, net, a, path = case
    den = NetworkDenoiser(network=net)
    r = net.img_resolution
    with pytest.raises(ShapeError, match=f"{r}x{r}"):
        den(torch.zeros(1, 3, 2 * r, 2 * r), 1.0)
    with pytest.raises(ShapeError):
        den(torch.zeros(1, 1, r, r), 1.0)
