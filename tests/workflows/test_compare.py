"""`pspc compare`: MSE against a reference on forward, file and trajectory latents, resumption, the table, the CSV
and the Pillow plot."""

import numpy as np
import pytest
import torch

from pspc_core import create_denoiser, edm_schedule
from pspc_compare.report import format_table, write_csv
from pspc_compare.study import LatentSource, compare, sampling_trajectory
from pspc_compare.plot import PALETTE, line_plot
from helpers import assert_one_line_error, pspc


@pytest.fixture
def gaussian(tiny_dataset):
    return create_denoiser("gaussian", dataset=tiny_dataset)


class Counting:
    def __init__(self, fn, interrupt_after=None):
        self.fn, self.calls, self.interrupt_after = fn, 0, interrupt_after

    def __call__(self, z, t):
        if self.interrupt_after is not None and self.calls >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls += 1
        return self.fn(z, t)


def shifted(den, delta):
    return lambda z, t: den(z, t) + delta


def test_mse_is_zero_against_itself_and_exact_for_a_known_offset(gaussian, tiny_dataset, tmp_path):
    grid = edm_schedule(3)
    source = LatentSource("forward", 5, dataset=tiny_dataset)
    res = compare(gaussian, {"same": gaussian, "offset": shifted(gaussian, 0.1)}, source, grid, 2, tmp_path, {},
                  progress=False)
    assert np.all(res["same"] == 0)
    np.testing.assert_allclose(res["offset"], 0.01, rtol=1e-5)


def test_mse_matches_a_direct_computation_on_file_latents(gaussian, tiny_dataset, tmp_path):
    grid = edm_schedule(2)
    z = np.random.default_rng(0).normal(size=(2, 3, 3, 8, 8)).astype(np.float32)
    emp = create_denoiser("empirical", dataset=tiny_dataset)
    res = compare(gaussian, {"empirical": emp}, LatentSource("file", 3, array=z), grid, 2, tmp_path, {}, progress=False)
    for k in range(2):
        zk, t = torch.from_numpy(z[k]), torch.full((3,), float(grid[k]))
        expected = ((emp(zk, t).double() - gaussian(zk, t).double()) ** 2).mean()
        assert res["empirical"][k] == pytest.approx(float(expected), rel=1e-6)


def test_trajectory_latents_are_the_reference_sampling_states(gaussian):
    from pspc_core import sample

    grid = edm_schedule(4)
    z0 = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * grid[0]
    traj = sampling_trajectory(gaussian, z0, grid, "heun")
    assert traj.shape == (2, 4, 2, 3, 8, 8)
    torch.testing.assert_close(traj[:, 0, 0], z0)
    seen = []
    sample(gaussian, z0, t_steps=grid, solver="euler", callback=lambda i, t, z, d: seen.append(z), progress=False)
    euler = sampling_trajectory(gaussian, z0, grid, "euler")
    for k in range(4):
        torch.testing.assert_close(euler[:, k, 0], seen[k])
        torch.testing.assert_close(euler[:, k, 1], gaussian(seen[k], torch.full((2,), float(grid[k]))))


def test_interrupted_compare_resumes_and_a_new_denoiser_reuses_the_reference(gaussian, tiny_dataset, tmp_path):
    grid = edm_schedule(3)
    source = LatentSource("forward", 4, dataset=tiny_dataset)
    emp = create_denoiser("empirical", dataset=tiny_dataset)
    broken = Counting(emp, interrupt_after=3)
    with pytest.raises(KeyboardInterrupt):
        compare(gaussian, {"empirical": broken}, source, grid, 2, tmp_path, {"ref": "g"}, progress=False)
    ref, again = Counting(gaussian), Counting(emp)
    res = compare(ref, {"empirical": again}, source, grid, 2, tmp_path, {"ref": "g"}, progress=False)
    assert ref.calls == 0 and again.calls == 3  # 6 units in all, 3 were done before the interruption
    ref2, new = Counting(gaussian), Counting(shifted(gaussian, 0.0))
    res2 = compare(ref2, {"empirical": Counting(emp), "new": new}, source, grid, 2, tmp_path, {"ref": "g"},
                   progress=False)
    assert ref2.calls == 0 and new.calls == 6
    np.testing.assert_array_equal(res["empirical"], res2["empirical"])
    full = compare(gaussian, {"empirical": emp}, source, grid, 2, tmp_path / "fresh", {}, progress=False)
    np.testing.assert_allclose(res["empirical"], full["empirical"], rtol=1e-12)


def test_table_csv_and_plot(tmp_path):
    grid = edm_schedule(4)
    results = {"a": np.array([1e-1, 1e-2, 1e-3, 0.0]), "b": np.array([2e-1, 5e-3, 2e-3, 0.0])}
    table = format_table(grid, results).splitlines()
    assert table[0].split() == ["t_idx", "t", "a", "b"] and len(table) == 5
    assert table[2].rstrip().endswith("5.000e-03*") and table[2].count("*") == 1  # smallest of its row is marked
    assert table[4].count("*") == 2  # and every column that ties for it
    write_csv(tmp_path / "c.csv", grid, results)
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert rows[0] == "t_idx,t,a,b" and rows[2].startswith("1,") and len(rows) == 5
    line_plot(tmp_path / "p.png", grid.numpy(), results, "title", "t", "MSE")
    from PIL import Image

    img = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    for colour in PALETTE[:2]:
        assert (np.abs(img.astype(int) - colour).sum(-1) == 0).sum() > 50  # each series is drawn
    assert not (np.abs(img.astype(int) - PALETTE[2]).sum(-1) == 0).any()  # and nothing else


def test_a_plot_of_zeros_is_drawn_empty_and_says_so(tmp_path):
    line_plot(tmp_path / "p.png", edm_schedule(3).numpy(), {"a": np.zeros(3)}, "MSE", "t", "MSE")
    from PIL import Image

    img = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    assert (np.abs(img.astype(int) - PALETTE[0]).sum(-1) == 0).sum() < 200  # the legend's swatch, no line


def test_cli_prints_the_table_and_writes_csv_and_png(tmp_path, capsys):
    data = tmp_path / "tiny.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (30, 3, 8, 8), dtype=np.uint8))
    out = tmp_path / "cmp"
    code, stdout, err = pspc(capsys, "compare", "-o", out, "--data", data, "-r", "gaussian", "-d",
                                "empirical,gaussian", "-p", "gaussian.rank=5", "--n_samples", 3, "--n_steps", 3,
                                "--latents", "trajectory", "--quiet", "--device", "cpu")
    assert code == 0, err
    assert "MSE against gaussian (3 latents, trajectory" in stdout and "empirical" in stdout
    assert (out / "compare.csv").read_text().startswith("t_idx,t,empirical,gaussian")
    assert (out / "compare.png").stat().st_size > 1000
    assert not (out / ".pspc-work" / "compare").exists()


@pytest.mark.parametrize("args, match", [
    (["-d", "empirical", "-p", "gaussian.rank=3"], "'gaussian' is not one of the chosen denoisers"),
    (["-d", "gaussian", "-p", "rank=3"], "-p LABEL.rank=... with LABEL one of empirical, gaussian"),
    (["-d", "empirical,empirical"], "twice"),
    (["-d", "empirikal"], "unknown denoiser"),
    (["-d", "gaussian", "--t-min", "5", "--t-max", "1"], "0 < t_min < t_max"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, match):
    code, _, err = pspc(capsys, "compare", "-o", tmp_path / "o", "--data", "builtin:shapes:4", "-r", "empirical",
                        *args, "-q")
    assert_one_line_error(code, err, match)
    assert not (tmp_path / "o").exists()