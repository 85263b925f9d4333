"""Studies of denoisers against a reference (normally a trained network) on the same latents, at every noise
level t_k of a grid: the reference's outputs once, then any number of scores per unit of work.

Latents at t_k come from one of three sources (`LatentSource`):
- `forward`: the forward process, z_i = x_{n_i} + t_k ε_i (latent i from seed + i, the same x and ε at every t);
- `file`: an array [L, N, C, R, R] as the paper ships (row k at t_k);
- `trajectory`: the states z_k of the reference's own PF-ODE sampling run from t_0·ε_i (Euler or Heun, main
  states only), where the reference output is its own denoising of them.

Work is split into units (grid point k, latent batch b), each kept on disk as soon as it is done: the latents and
reference outputs once (`Study.run_reference`), then one job per score (`Study.score`: a compared denoiser's
squared error, or every candidate scale of a calibrated one), so that a rerun after an interruption, or with one
more denoiser, redoes nothing finished. Under torchrun, rank r takes the latent batches b with b % world = r
(every unit of them, so each rank reads only its own files) and rank 0 gathers the per-unit sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pspc_core.runtime import distributed
from pspc_core.runtime.batches import BatchJob
from pspc_core.runtime.progress import Progress

SOURCES = ("forward", "file", "trajectory")


@dataclass
class LatentSource:
    kind: str                      # forward, file or trajectory
    n: int                         # number of latents
    seed: int = 0
    dataset: object = None         # forward
    array: np.ndarray | None = None  # file: [L, N, C, R, R]
    shape: tuple | None = None     # trajectory: (C, R, R)
    solver: str = "euler"          # trajectory

    def key(self) -> dict:
        from pspc_core.runtime.fingerprint import dataset_fingerprint

        data = dataset_fingerprint(self.dataset) if self.dataset is not None else None
        return dict(kind=self.kind, n=self.n, seed=self.seed, data=data,
                    solver=self.solver if self.kind == "trajectory" else None)

    def seeds(self) -> range | None:
        """The seeds of the latents (None for a file: its latents are the file's)."""
        return None if self.kind == "file" else range(self.seed, self.seed + self.n)


def sampling_trajectory(reference: Callable, z0: torch.Tensor, t_grid: torch.Tensor, solver: str) -> torch.Tensor:
    """States z_k at every grid point of the reference's PF-ODE run and its outputs there: [B, L, 2, C, R, R]."""
    from pspc_core.sampler import sample

    L = len(t_grid)
    states = [None] * L

    def record(i, t, z, denoised):
        if states[i] is None:  # Heun calls twice per step: the first call is at the main state z_i, t_i
            states[i] = torch.stack([z.float(), denoised.float()], 1).cpu()

    sample(reference, z0, t_steps=t_grid, solver=solver, callback=record, progress=False)
    return torch.stack(states, 1)


class Study:
    """Latents and reference outputs per unit u = k·nb + b (grid point k, latent batch b), then scores per unit."""

    def __init__(self, source: LatentSource, t_grid: torch.Tensor, batch: int, workdir: Path, key: dict,
                 device="cpu", progress: bool = True):
        self.source, self.t_grid, self.workdir, self.device = source, t_grid, Path(workdir), device
        self.rank, world = distributed.rank_world()
        self.L, n = len(t_grid), source.n
        self.nb = -(-n // batch)
        self.ranges = [(b * batch, min((b + 1) * batch, n)) for b in range(self.nb)]
        self.mine_b = [b for b in range(self.nb) if b % world == self.rank]
        self.mine_u = [k * self.nb + b for k in range(self.L) for b in self.mine_b]
        self.progress = progress and self.rank == 0
        self.base = dict(key, source=source.key(), t=[float(t) for t in t_grid], batch=batch)
        self.ref_job = BatchJob(self.workdir / "reference", dict(self.base, role="reference"), self.L * self.nb, 1)

    def run_reference(self, reference: Callable) -> None:
        """The latents and the reference's outputs of every unit of this rank, stored as [2, B, C, R, R]."""
        traj_job = None
        if self.source.kind == "trajectory":
            traj_job = BatchJob(self.workdir / "trajectory", dict(self.base, role="trajectory"), self.nb, 1)
            _run(traj_job, lambda b: self._trajectory(reference, b), self.mine_b, "trajectories", self.progress)

        def unit(u: int) -> np.ndarray:
            k, b = divmod(u, self.nb)
            if traj_job is not None:
                return traj_job.load((b, b + 1))[0][:, k].transpose(1, 0, 2, 3, 4)[None]
            z = self._latents(k, b).to(self.device)
            with torch.no_grad():
                ref = reference(z, torch.full((len(z),), float(self.t_grid[k]), device=self.device))
            return torch.stack([z.float(), ref.float()]).cpu().numpy()[None]

        _run(self.ref_job, unit, self.mine_u, "reference", self.progress)

    def _trajectory(self, reference: Callable, b: int) -> np.ndarray:
        from pspc_core.latents import gaussian_latents

        start, stop = self.ranges[b]
        z0 = gaussian_latents(range(self.source.seed + start, self.source.seed + stop), self.source.shape)
        with torch.no_grad():
            return sampling_trajectory(reference, (z0 * self.t_grid[0]).to(self.device), self.t_grid,
                                       self.source.solver).numpy()[None]

    def _latents(self, k: int, b: int) -> torch.Tensor:
        start, stop = self.ranges[b]
        if self.source.kind == "forward":
            from pspc_core.latents import forward_process

            seeds = range(self.source.seed + start, self.source.seed + stop)
            return forward_process(self.source.dataset, seeds, float(self.t_grid[k]))
        return torch.from_numpy(np.array(self.source.array[k, start:stop], dtype=np.float32))

    def score(self, name: str, key, fn: Callable[[torch.Tensor, torch.Tensor, float], np.ndarray],
              desc: str) -> np.ndarray | None:
        """Σ over latent batches of `fn(z, D_ref, t)` (an array, the same shape for every unit) per grid point:
        [L, ...] on rank 0 (None on the others). Each unit's value is kept on disk under `name`."""
        job = BatchJob(self.workdir / name, dict(self.base, role=name, denoiser=key), self.L * self.nb, 1)

        def unit(u: int) -> np.ndarray:
            k, _ = divmod(u, self.nb)
            z, ref = torch.from_numpy(self.ref_job.load((u, u + 1))[0])
            t = float(self.t_grid[k])
            with torch.no_grad():
                return np.asarray(fn(z.to(self.device), ref.to(self.device), t), dtype=np.float64)[None]

        _run(job, unit, self.mine_u, desc, self.progress)
        units = distributed.gather_merged({u: job.load((u, u + 1)) for u in self.mine_u})
        if units is None:
            return None
        values = np.concatenate([units[u] for u in range(self.L * self.nb)])
        return values.reshape(self.L, self.nb, *values.shape[1:]).sum(1)


def compare(reference: Callable, denoisers: dict[str, Callable], source: LatentSource, t_grid: torch.Tensor,
            batch: int, workdir: Path, key: dict, device="cpu", progress: bool = True) -> dict[str, np.ndarray] | None:
    """{name: MSE per grid point [L]} of each denoiser against `reference` on the latents of `source`:
    MSE_k(D) = mean over latents and pixels of (D(z, t_k) − D_ref(z, t_k))². Rank 0 returns it, the others None."""
    keys = key.get("denoisers", {})
    study = Study(source, t_grid, batch, workdir, {k: v for k, v in key.items() if k != "denoisers"}, device,
                  progress)  # the compared denoisers are not part of the shared key: adding one reuses all done
    study.run_reference(reference)
    results = {}
    for name, den in denoisers.items():

        def squared_error(z, ref, t, den=den):
            diff = (den(z, torch.full((len(z),), t, device=z.device)).double() - ref.double()) ** 2
            return [float(diff.sum()), float(diff.numel())]

        sums = study.score(f"mse-{name}", keys.get(name, name), squared_error, name)
        if sums is not None:
            results[name] = sums[:, 0] / sums[:, 1]
    distributed.barrier()
    return results if study.rank == 0 else None


def _run(job: BatchJob, fn: Callable[[int], np.ndarray], units: list[int], desc: str, progress: bool) -> None:
    """Compute the missing ones of `units` (this rank's share), each kept on disk when done."""
    done = set(job.done())
    todo = [(u, u + 1) for u in units if (u, u + 1) not in done]
    with Progress(len(units), desc, enable=progress, done=len(units) - len(todo)) as bar:
        job.run(lambda start, stop: fn(start), ranges=todo, on_batch=lambda *_: bar.advance())
