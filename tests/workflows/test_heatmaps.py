"""`pspc heatmaps`: Jacobian heatmaps against the Gaussian denoiser's closed form, batched VJPs against one
backward pass per pixel, resumption, file formats and one-line errors."""

import numpy as np
import pytest
import torch

from pspc_core import create_denoiser, edm_schedule
from pspc_core.errors import PspcError, ShapeError
from pspc_core.latents import forward_process
from pspc_core.runtime.batches import BatchJob
from pspc_heatmaps.compute import compute_heatmaps, heatmap_sum, heatmap_sum_loop
from pspc_patch.heatmap_files import load_heatmaps, save_heatmaps


def gaussian_heatmap(den, t: float, per_channel: bool) -> torch.Tensor:
    """Closed form: J = U diag(s / (s + t²)) Uᵀ, rows (c, y, x) out, columns (c', i, j) in."""
    C, R = den.channels, den.resolution
    J = (den.vecs * (den.evals / (den.evals + t * t))) @ den.vecs.T
    J = J.view(C, R * R, C, R * R)
    h = J.abs().sum(2).sum(0) if per_channel else J.sum(0).abs().sum(1)
    return h.view(R, R, R, R)


@pytest.fixture
def gaussian(tiny_dataset):
    return create_denoiser("gaussian", dataset=tiny_dataset)


@pytest.mark.parametrize("per_channel", [False, True])
def test_gaussian_heatmaps_equal_the_closed_form_jacobian(gaussian, tiny_dataset, per_channel):
    grid = edm_schedule(3, 0.002, 80.0, 7.0)[1:]  # two grid points, t = 3.7 and 0.002

    def latents(start, stop, t):
        return forward_process(tiny_dataset, range(start, stop), t)

    maps = compute_heatmaps(gaussian, latents, grid, n_latents=3, batch=2, pixel_chunk=20, per_channel=per_channel,
                            progress=False)
    assert maps.shape == (2, 8, 8, 8, 8)
    for k, t in enumerate(grid.tolist()):
        expected = gaussian_heatmap(gaussian, t, per_channel).float()
        torch.testing.assert_close(maps[k], expected, rtol=1e-4, atol=1e-6)
    # The definitions differ: summing channel rows before |.| lets them cancel.
    other = gaussian_heatmap(gaussian, float(grid[0]), not per_channel).float()
    assert (maps[0] - other).abs().max() > 1e-3


def tiny_network():
    from pspc_network.config import build_network
    from pspc_network.denoiser import NetworkDenoiser
    from pspc_train.init import init_edm_weights

    config = {"class_name": "EDMPrecond", "init_kwargs": dict(
        img_resolution=8, img_channels=3, model_type="SongUNet", model_channels=8, channel_mult=[1, 2],
        num_blocks=1, attn_resolutions=[4], dropout=0.0)}
    net = init_edm_weights(build_network(config), seed=1)
    with torch.no_grad():  # move the zero-initialised output layers off zero so every path matters
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    return NetworkDenoiser(network=net)


@pytest.mark.parametrize("per_channel", [False, True])
def test_batched_vjps_equal_one_backward_pass_per_pixel(per_channel):
    den = tiny_network()
    z = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    fast = heatmap_sum(den, z, 1.3, pixel_chunk=24, per_channel=per_channel)
    slow = heatmap_sum_loop(den, z, 1.3, per_channel=per_channel)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-8)
    assert slow.std() > 0  # a nonlinear net: maps vary from pixel to pixel


class CountingDenoiser:
    """Wraps a denoiser, counts the noise levels it is called at, and interrupts at a chosen one."""

    def __init__(self, den, stop_at=None):
        self.den, self.stop_at, self.calls = den, stop_at, []

    def __call__(self, z, t):
        level = round(float(t[0]), 6)
        if level == self.stop_at:
            raise KeyboardInterrupt
        self.calls.append(level)
        return self.den(z, t)


def test_interrupted_run_resumes_without_redoing_finished_grid_points(gaussian, tiny_dataset, tmp_path):
    grid = edm_schedule(3)
    levels = [round(float(t), 6) for t in grid]

    def latents(start, stop, t):
        return forward_process(tiny_dataset, range(start, stop), t)

    def job():
        return BatchJob(tmp_path / "work", {"test": 1}, len(grid), 1)

    first = CountingDenoiser(gaussian, stop_at=levels[2])
    with pytest.raises(KeyboardInterrupt):
        compute_heatmaps(first, latents, grid, 2, 2, progress=False, job=job())
    assert sorted(set(first.calls)) == sorted(levels[:2])
    second = CountingDenoiser(gaussian)
    resumed = compute_heatmaps(second, latents, grid, 2, 2, progress=False, job=job())
    assert set(second.calls) == {levels[2]}
    full = compute_heatmaps(gaussian, latents, grid, 2, 2, progress=False)
    torch.testing.assert_close(resumed, full)


def test_non_differentiable_denoiser_is_a_clear_error(tiny_dataset):
    def frozen(z, t):
        with torch.no_grad():
            return z * 0.5

    def latents(start, stop, t):
        return forward_process(tiny_dataset, range(start, stop), t)

    with pytest.raises(PspcError, match="not differentiable"):
        compute_heatmaps(frozen, latents, edm_schedule(2), 1, 1, progress=False)


def test_files_round_trip_and_float16_keeps_the_maps_shape(tmp_path):
    maps = torch.rand(2, 4, 4, 4, 4) * 7
    grid = edm_schedule(2)
    save_heatmaps(tmp_path / "h.safetensors", maps, grid, {"n": 3})
    back, meta = load_heatmaps(tmp_path / "h.safetensors")
    assert torch.equal(back, maps) and meta == {"n": 3, "t": grid.tolist()}  # the grid comes back in the metadata
    save_heatmaps(tmp_path / "h16.safetensors", maps, grid, float16=True)
    half, _ = load_heatmaps(tmp_path / "h16.safetensors")
    normalised = maps / maps.flatten(3).amax(-1)[..., None, None]
    torch.testing.assert_close(half, normalised, rtol=1e-3, atol=1e-3)
    np.save(tmp_path / "bad.npy", np.zeros((2, 4, 4, 4), np.float32))
    with pytest.raises(ShapeError, match=r"expected \[L, R, R, R, R\]"):
        load_heatmaps(tmp_path / "bad.npy")


def test_cli_writes_files_pspc_flex_reads(tmp_path, capsys):
    from helpers import pspc

    data = tmp_path / "tiny.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (30, 3, 8, 8), dtype=np.uint8))
    args = ["heatmaps", "-d", "gaussian", "--data", data, "--n_latents", 2, "--n_steps", 3, "--npy", "-o",
            tmp_path / "hm", "--quiet", "--device", "cpu"]
    code, out, _ = pspc(capsys, *args)
    assert code == 0 and "heatmaps (3, 8, 8, 8, 8)" in out
    written = tmp_path / "hm" / "gaussian_heatmaps.safetensors"
    assert np.load(written.with_suffix(".npy")).shape == (3, 8, 8, 8, 8)
    assert not (tmp_path / "hm" / ".pspc-work").exists()
    torch.testing.assert_close(load_heatmaps(written)[0], torch.from_numpy(np.load(written.with_suffix(".npy"))))
    code, _, _ = pspc(capsys, *args, "--format", "npz")
    compact = load_heatmaps(tmp_path / "hm" / "gaussian_heatmaps.npz")[0]
    torch.testing.assert_close(compact, load_heatmaps(written)[0], rtol=0.03, atol=1e-5 * float(compact.max()))


def test_cli_bad_output_format_is_one_line(tmp_path, capsys):
    from helpers import assert_one_line_error, pspc

    code, _, err = pspc(capsys, "heatmaps", "-d", "gaussian", "--data", "builtin:shapes:5", "-o", tmp_path,
                        "--format", "npy")
    assert_one_line_error(code, err, "--format")
    assert not any(tmp_path.iterdir())


def test_shipped_network_and_heatmaps_load():
    from pspc_network.shipped import CHECKPOINT
    from pspc_patch.shipped import HEATMAPS

    den = create_denoiser("network", checkpoint=str(CHECKPOINT))
    assert (den.channels, den.resolution) == (3, 32)
    maps, meta = load_heatmaps(HEATMAPS)
    assert maps.shape == (18, 32, 32, 32, 32) and meta["n"] == 304 and (maps >= 0).all()
    # The maps are local at small t: the mass near pixel (16, 16) grows as t falls.
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    near = ((yy - 16) ** 2 + (xx - 16) ** 2 <= 4).float()
    mass = [(maps[k, 16, 16] * near).sum() / maps[k, 16, 16].sum() for k in (0, 9, 17)]
    assert mass[0] < mass[1] < mass[2] and mass[2] > 0.9
