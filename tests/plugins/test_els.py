"""`els` (ELS and boundary-broken ELS) and `ls`: exact against a float64 per-pixel oracle (near-ties included),
against Kamb & Ganguli's own outputs, and as plugins (registration, presets, one-line errors)."""

import functools
import inspect
import math

import numpy as np
import pytest
import torch

from helpers import assert_one_line_error, pspc
from oracles import local_score_direct
from pspc_core import Dataset, ParameterError, create_denoiser, get_preset, list_denoisers
from pspc_els import scan_cpu, scan_torch
from pspc_els.plan import axis_plan
from pspc_els.schedules import RESNET_CIRCULAR, RESNET_ZEROS, T_GRID, UNET_ZEROS

MODELS = ["circular", "zeros", "ls"]
KERNELS = {"compiled": lambda z, x, plan, t: scan_cpu.scan(z, scan_cpu.lanes_last(x), plan, t),
           "torch": lambda z, x, plan, t: scan_torch.scan(z, x, plan, t, chunk=64)}


def _random_set(n=12, R=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, R, R), generator=g, dtype=torch.uint8)


def _latents(images, t, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = images[:3].double() / 127.5 - 1
    return (x + t * torch.randn(x.shape, generator=g, dtype=torch.float64)).float()


# ---------------------------------------------------------------------------------------------------------------
# Exactness against the float64 oracle


@functools.cache
def _oracle(model, k, t):
    images = _random_set()
    z = _latents(images, t)
    return images, z, local_score_direct(images, z, torch.full((3,), t, dtype=torch.float64), k, model)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_float64_oracle_at_every_noise_level(one_torch_thread, kernel, model, k):
    plan = axis_plan(8, k, model)
    for t in (0.002, 0.01, 0.3, 2.0, 20.0):
        images, z, ref = _oracle(model, k, t)
        err = (KERNELS[kernel](z, images, plan, t) - ref).abs().max().item()
        assert err <= 1e-9, f"t = {t}: {err}"


@pytest.mark.parametrize("model", ["circular", "zeros"])
@pytest.mark.parametrize("k", [3, 15])
def test_compiled_kernel_matches_the_oracle_in_blocks_of_every_width(one_torch_thread, monkeypatch, model, k):
    images = _random_set(300, 16, seed=3)  # full blocks of images and a partial last one, whatever the width
    plan = axis_plan(16, k, model)
    for t in (0.002, 20.0):  # most windows left out; every lane weighed
        z = _latents(images, t)[:1]
        ref = local_score_direct(images, z, torch.full((1,), t, dtype=torch.float64), k, model)
        for lanes in scan_cpu.BLOCK_LANES:
            monkeypatch.setattr(scan_cpu, "block_lanes", lambda N, B: lanes)
            err = (KERNELS["compiled"](z, images, plan, t) - ref).abs().max().item()
            assert err <= 1e-9, f"t = {t}, blocks of {lanes}: {err}"


def test_blocks_are_as_wide_as_the_cores_and_the_padding_allow(monkeypatch):
    monkeypatch.setattr(scan_cpu.os, "cpu_count", lambda: 2)
    assert [scan_cpu.block_lanes(N, 1) for N in (1000, 10_000, 500, 300, 10)] == [256, 256, 128, 64, 64]
    assert scan_cpu.block_lanes(1000, 2) == 256 and scan_cpu.block_lanes(300, 2) == 64  # 512 lanes for 300 images
    monkeypatch.setattr(scan_cpu.os, "cpu_count", lambda: 64)
    assert scan_cpu.block_lanes(100_000, 1) == 256 and scan_cpu.block_lanes(1000, 1) == 64
    assert scan_cpu.block_lanes(10, 64) == 64  # many latents, few images: no lanes wasted on width


def _near_tie(t, gap=1.0):
    """Random 8x8 images plus a twin of image 0 whose pixel (3, 4) is one uint8 step off, and a latent equal to
    image 0 except there, placed so that the logits of the two windows over that pixel differ by `gap` at noise
    level t: d(twin) - d(image 0) = 3Δ²(1 - 2s) = 2t²·gap for the latent at s steps from image 0."""
    images = _random_set(10, 8, seed=2)
    twin = images[0].clone()
    twin[:, 3, 4] = torch.where(twin[:, 3, 4] < 255, twin[:, 3, 4] + 1, twin[:, 3, 4] - 1)
    images = torch.cat([images, twin[None]])
    x0, x1 = images[[0, -1]].double() / 127.5 - 1
    s = 0.5 - t**2 * gap * 127.5**2 / 3
    z = x0.clone()
    z[:, 3, 4] += s * (x1 - x0)[:, 3, 4]
    return images, z[None].float()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("t", [0.01, 0.002])
def test_near_ties_at_small_noise_match_the_oracle(one_torch_thread, kernel, model, t):
    images, z = _near_tie(t)
    for k in (3, 5):
        plan = axis_plan(8, k, model)
        ref = local_score_direct(images, z, torch.full((1,), t, dtype=torch.float64), k, model)
        out = KERNELS[kernel](z, images, plan, t)
        assert (out - ref).abs().max().item() <= 1e-5
        x0, x1 = images[[0, -1], :, 3, 4].double() / 127.5 - 1
        share = ((ref[0, :, 3, 4] - x0) / (x1 - x0)).min().item()
        assert 0.05 < share < 0.95, f"not a near-tie: the twin's share of the tie pixel is {share}"


def test_torch_path_streams_the_training_set_in_chunks(one_torch_thread):
    images = _random_set(12)
    z = _latents(images, 0.3)
    plan = axis_plan(8, 5, "zeros")
    whole = scan_torch.scan(z, images, plan, 0.3, chunk=64)
    assert (scan_torch.scan(z, images, plan, 0.3, chunk=4) - whole).abs().max().item() <= 1e-13  # one image a step


def test_mixed_noise_levels_in_one_batch_are_split_by_t():
    images = _random_set()
    den = create_denoiser("els", dataset=Dataset(images), patch_sizes=[3, 5], t_grid=[0.1, 1.0])
    z = _latents(images, 0.5)
    t = torch.tensor([0.05, 2.0, 0.05])
    out = den(z, t)
    for i, (k, ti) in enumerate([(3, 0.05), (5, 2.0), (3, 0.05)]):
        ref = local_score_direct(images, z[i : i + 1], torch.tensor([ti], dtype=torch.float64), k, "circular")
        assert (out[i : i + 1].double() - ref).abs().max().item() <= 1e-6


@pytest.mark.parametrize("model", ["zeros", "ls"])  # LS runs its own kernel
def test_compiled_results_do_not_depend_on_the_thread_count(model):
    images = _random_set(300)
    z = _latents(images, 0.3)
    plan = axis_plan(8, 3, model)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = scan_cpu.scan(z, scan_cpu.lanes_last(images), plan, 0.3)
        torch.set_num_threads(2)
        two = scan_cpu.scan(z, scan_cpu.lanes_last(images), plan, 0.3)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


# ---------------------------------------------------------------------------------------------------------------
# Against the authors' own outputs (no x-flips; their float32 distances are ~1e-3 off the exact value at t = 0.01)


@pytest.fixture(scope="module")
def els16(shared, peers200):
    return dict(np.load(shared / "reference" / "peers" / "kamb_els_16.npz")), peers200


def _check_rows(den, ref, key):
    for i, t in enumerate(ref["t"]):
        err = (den(torch.from_numpy(ref["z"][i]), float(t)) - torch.from_numpy(ref[key][i])).abs().max().item()
        assert err <= (2e-3 if t < 0.3 else 2e-4), f"{key}, t = {t}: max abs error {err}"


@pytest.mark.slow
@pytest.mark.parametrize("key,name,params", [("ELS", "els", {"boundary": "circular"}),
                                             ("bbELS", "els", {"boundary": "zeros"}), ("LS", "ls", {})])
@pytest.mark.parametrize("k", [3, 5, 7, 11])
def test_matches_authors_outputs_on_cifar16(els16, key, name, params, k):
    ref, data = els16
    _check_rows(create_denoiser(name, dataset=data, patch_sizes=[k], **params), ref, f"{key}_k{k}_D")


@pytest.mark.slow
@pytest.mark.parametrize("k", [3, 5, 11, 15])
def test_ls_matches_authors_outputs_on_cifar32(shared, k):
    from pspc_core import load_dataset

    ref = dict(np.load(shared / "reference" / "peers" / "kamb_ls_32.npz"))
    data = load_dataset(shared / "data" / "cifar10-train-1k-32.zip")
    _check_rows(create_denoiser("ls", dataset=data, patch_sizes=[k]), ref, f"LS_k{k}_D")


@pytest.mark.slow
def test_torch_path_matches_authors_outputs(one_torch_thread, els16):
    ref, data = els16
    for i, t in enumerate(ref["t"]):
        out = scan_torch.scan(torch.from_numpy(ref["z"][i]), data.images, axis_plan(16, 5, "ls"), float(t), chunk=1024)
        err = (out - torch.from_numpy(ref["LS_k5_D"][i])).abs().max().item()
        assert err <= (2e-3 if t < 0.3 else 2e-4), f"t = {t}: {err}"
    out = scan_torch.scan(torch.from_numpy(ref["z"][0][:1]), data.images, axis_plan(16, 11, "zeros"), 0.01, chunk=256)
    assert (out - torch.from_numpy(ref["bbELS_k11_D"][0][:1])).abs().max().item() <= 2e-3


@pytest.mark.slow
def test_exact_softmax_not_the_authors_batch_mean(els16):
    """Their softmax averages per-batch means: with batches of 64 over 200 images it moves D by up to 0.148."""
    ref, data = els16
    out = create_denoiser("els", dataset=data, patch_sizes=[3])(torch.from_numpy(ref["z"][1]), float(ref["t"][1]))
    assert (out - torch.from_numpy(ref["ELS_k3_D"][1])).abs().max().item() <= 2e-4
    assert (out - torch.from_numpy(ref["ELS_bs64_k3_D"][1])).abs().max().item() > 0.1


# ---------------------------------------------------------------------------------------------------------------
# Plugin: registration, presets, errors


def test_both_denoisers_are_registered_through_the_entry_point_group():
    specs = {s.name: s for s in list_denoisers()}
    assert specs["els"].plugin == specs["ls"].plugin == "els"
    from pspc_els.els import ELS
    from pspc_els.ls import LS

    for name, cls in (("els", ELS), ("ls", LS)):
        signature = inspect.signature(cls.__init__).parameters
        declared = {p.name: p.default for p in specs[name].params}
        assert list(declared) == [n for n in signature if n != "self"]
        assert all(declared[n] == p.default for n, p in signature.items() if n not in ("self", "dataset"))


def test_schedule_grid_is_the_authors_cosine_schedule_in_our_convention():
    """scales[i] is used at τ = i/20 with β = 1 - cos²(τπ/2.016) (their noise_schedules.py, 'legacy'); our t is
    sqrt(β / (1 - β))."""
    for i, t in enumerate(T_GRID):
        beta = 1 - math.cos(i / 20 / 1.008 * math.pi / 2) ** 2
        assert t == pytest.approx(math.sqrt(beta / (1 - beta)), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name,boundary,sizes", [("els_cifar10_resnet_circular", "circular", RESNET_CIRCULAR),
                                                 ("els_cifar10_resnet_zeros", "zeros", RESNET_ZEROS),
                                                 ("els_cifar10_unet_zeros", "zeros", UNET_ZEROS)])
def test_presets_hold_the_authors_cifar10_schedules_on_their_grid(name, boundary, sizes):
    preset = get_preset(name)
    assert preset.denoiser == "els" and preset.params["boundary"] == boundary
    assert preset.params["patch_sizes"] == list(sizes)
    assert preset.params["t_grid"] == list(T_GRID)
    den = create_denoiser("els", dataset=Dataset(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)), **preset.params)
    assert [den.patch_size(t) for t in (0.002, 0.2, 80.0)] == [sizes[0], sizes[3], sizes[-1]]


def test_schedules_are_the_authors_files(shared):
    files = shared / "baselines" / "kamb-els" / "files"
    for stem, sizes in (("ResNet_circular", RESNET_CIRCULAR), ("ResNet_zeros", RESNET_ZEROS), ("UNet_zeros", UNET_ZEROS)):
        assert [int(k) for k in torch.load(files / f"scales_CIFAR10_{stem}_conditional.pt")] == list(sizes)


def test_default_schedule_is_scaled_to_the_resolution():
    small = create_denoiser("els", dataset=Dataset(_random_set(4, 16)))
    assert small.schedule.values == [1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 5, 5, 5, 5, 7, 7, 7, 7, 7]
    assert create_denoiser("ls", dataset=Dataset(_random_set(4, 32))).schedule.values == list(RESNET_ZEROS)


@pytest.mark.parametrize("name,params,words", [
    ("els", dict(patch_sizes=[3, 4]), "patch size 4 is even"),
    ("els", dict(patch_sizes=[9]), "does not fit 8x8"),
    ("ls", dict(patch_sizes=[-1]), "does not fit 8x8"),
    ("els", dict(patch_sizes=[]), "empty"),
    ("els", dict(patch_sizes=[3, 5], t_grid=[1.0]), "t_grid has 1 noise levels"),
    ("els", dict(boundary="reflect"), "boundary"),
    ("els", dict(patch_sizes=[3], chunk_size=0), "chunk_size"),
    ("ls", dict(patch_sizes="3,x"), "list[int]"),
])
def test_bad_parameters_are_one_line_errors(name, params, words):
    with pytest.raises(ParameterError) as info:
        create_denoiser(name, dataset=Dataset(_random_set(4)), **params)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("args,words", [
    (["-d", "els", "-p", "patch_sizes=4"], "patch size 4 is even"),
    (["-d", "els", "-p", "boundary=mirror"], "boundary"),
    (["-d", "ls", "-p", "patch_sizes=33"], "does not fit 32x32"),
])
def test_cli_bad_input_is_one_line_exit_2(capsys, tmp_path, args, words):
    code, _, err = pspc(capsys, "denoise", *args, "--data", "builtin:shapes:8", "--n-samples", "1", "--outdir",
                        tmp_path, "--quiet", "--device", "cpu")
    assert_one_line_error(code, err, words)


def test_cli_samples_with_a_preset_and_denoises_with_ls(capsys, shared, tmp_path):
    data = shared / "data" / "cifar10-train-200-16.zip"
    runs = [["sample", "--preset", "els_cifar10_resnet_circular", "--n-steps", "5"],
            ["denoise", "-d", "ls", "-p", "patch_sizes=5"]]
    for i, extra in enumerate(runs):
        out = tmp_path / str(i)
        code, _, err = pspc(capsys, *extra, "--data", data, "--n-samples", "2", "--outdir", out, "-q", "--device", "cpu")
        assert code == 0, err
        arrays = [np.load(p) for p in out.glob("*.npy")]
        assert arrays and all(a.shape[-3:] == (3, 16, 16) and np.isfinite(a).all() for a in arrays)
