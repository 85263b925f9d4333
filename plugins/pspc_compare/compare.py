"""How close denoisers are to a reference denoiser (normally a trained network), the paper's central experiment:
at every noise level t_k of a grid and on the same latents z, MSE_k(D) = mean over latents and pixels of
(D(z, t_k) - D_ref(z, t_k))².

Latents at t_k come from one of three sources (`LatentSource`):
- `forward`: the forward process, z_i = x_{n_i} + t_k ε_i (latent i from seed + i, the same x and ε at every t);
- `file`: an array [L, N, C, R, R] as the paper ships (row k at t_k);
- `trajectory`: the states z_k of the reference's own PF-ODE sampling run from t_0·ε_i (Euler or Heun, main
  states only), where the reference output is its own denoising of them.

Work is split into units (grid point k, latent batch b), each kept on disk as soon as it is done: the reference
outputs (and trajectories) once, then one job per compared denoiser, so that a rerun after an interruption, or
with one more denoiser, redoes nothing finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

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


def compare(reference: Callable, denoisers: dict[str, Callable], source: LatentSource, t_grid: torch.Tensor,
            batch: int, workdir: Path, key: dict, device="cpu", progress: bool = True) -> dict[str, np.ndarray] | None:
    """{name: MSE per grid point [L]} of each denoiser against `reference` on the latents of `source`.

    Under torchrun, rank r takes the latent batches b with b % world = r (every unit of them, so that each rank
    reads only its own files) and rank 0 gathers the per-unit sums: it returns the results, the others None.
    """
    from pspc_core.runtime import distributed

    rank, world = distributed.rank_world()
    L, n = len(t_grid), source.n
    nb = -(-n // batch)
    ranges = [(b * batch, min((b + 1) * batch, n)) for b in range(nb)]
    mine_b = [b for b in range(nb) if b % world == rank]
    mine_u = [k * nb + b for k in range(L) for b in mine_b]
    progress = progress and rank == 0
    # The list of compared denoisers is not part of the shared key: adding one reuses everything done.
    base = dict({k: v for k, v in key.items() if k != "denoisers"}, source=source.key(),
                t=[float(t) for t in t_grid], batch=batch)

    # 1. Latents and reference outputs per unit u = k·nb + b, stored as [2, B, C, R, R] (z, D_ref).
    ref_job = BatchJob(Path(workdir) / "reference", dict(base, role="reference"), L * nb, 1)
    traj_job = None
    if source.kind == "trajectory":
        traj_job = BatchJob(Path(workdir) / "trajectory", dict(base, role="trajectory"), nb, 1)

    def trajectory(b: int) -> np.ndarray:
        from pspc_core.latents import gaussian_latents

        start, stop = ranges[b]
        z0 = gaussian_latents(range(source.seed + start, source.seed + stop), source.shape) * t_grid[0]
        with torch.no_grad():
            return sampling_trajectory(reference, z0.to(device), t_grid, source.solver).numpy()[None]

    def latents(k: int, b: int) -> torch.Tensor:
        start, stop = ranges[b]
        t = float(t_grid[k])
        if source.kind == "forward":
            from pspc_core.latents import forward_process

            return forward_process(source.dataset, range(source.seed + start, source.seed + stop), t)
        return torch.from_numpy(np.array(source.array[k, start:stop], dtype=np.float32))

    def reference_unit(u: int) -> np.ndarray:
        k, b = divmod(u, nb)
        if traj_job is not None:
            return traj_job.load((b, b + 1))[0][:, k].transpose(1, 0, 2, 3, 4)[None]
        z = latents(k, b).to(device)
        with torch.no_grad():
            ref = reference(z, torch.full((len(z),), float(t_grid[k]), device=device))
        return torch.stack([z.float(), ref.float()]).cpu().numpy()[None]

    if traj_job is not None:
        _run(traj_job, trajectory, mine_b, "trajectories", progress)
    _run(ref_job, reference_unit, mine_u, "reference", progress)

    # 2. Each denoiser: sum of squared differences and count per unit.
    results = {}
    for name, den in denoisers.items():
        job = BatchJob(Path(workdir) / f"mse-{name}", dict(base, role="mse", denoiser=key.get("denoisers", {}).get(name, name)),
                       L * nb, 1)

        def unit(u: int, den=den) -> np.ndarray:
            k, b = divmod(u, nb)
            z, ref = torch.from_numpy(ref_job.load((u, u + 1))[0])
            with torch.no_grad():
                out = den(z.to(device), torch.full((len(z),), float(t_grid[k]), device=device)).float().cpu()
            diff = (out.double() - ref.double()) ** 2
            return np.array([[float(diff.sum()), float(diff.numel())]])

        _run(job, unit, mine_u, name, progress)
        units = distributed.gather_merged({u: job.load((u, u + 1)) for u in mine_u})
        if units is not None:
            sums = np.concatenate([units[u] for u in range(L * nb)]).reshape(L, nb, 2).sum(1)
            results[name] = sums[:, 0] / sums[:, 1]
    distributed.barrier()
    return results if rank == 0 else None


def _run(job: BatchJob, fn: Callable[[int], np.ndarray], units: list[int], desc: str, progress: bool) -> None:
    """Compute the missing ones of `units` (this rank's share), each kept on disk when done."""
    done = set(job.done())
    todo = [(u, u + 1) for u in units if (u, u + 1) not in done]
    with Progress(len(units), desc, enable=progress, done=len(units) - len(todo)) as bar:
        job.run(lambda start, stop: fn(start), ranges=todo, on_batch=lambda *_: bar.advance())


def format_table(t_grid: torch.Tensor, results: dict[str, np.ndarray]) -> str:
    """The MSE table: one row per grid point, one column per denoiser, the smallest MSE of a row marked *."""
    names = list(results)
    width = max(11, *(len(n) + 2 for n in names))
    lines = [f"{'t_idx':>5} {'t':>9} " + "".join(f"{n:>{width}}" for n in names)]
    for k, t in enumerate(t_grid.tolist()):
        values = [results[n][k] for n in names]
        best = int(np.argmin(values))
        cells = "".join(f"{v:>{width - 1}.3e}{'*' if i == best else ' '}" for i, v in enumerate(values))
        lines.append(f"{k:>5} {t:>9.4g} {cells}")
    return "\n".join(lines)


def write_csv(path, t_grid: torch.Tensor, results: dict[str, np.ndarray]) -> None:
    from pspc_core.runtime.atomic import atomic_path

    names = list(results)
    rows = ["t_idx,t," + ",".join(names)]
    for k, t in enumerate(t_grid.tolist()):
        rows.append(f"{k},{t:.9g}," + ",".join(f"{results[n][k]:.9g}" for n in names))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(rows) + "\n")
