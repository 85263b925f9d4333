"""Long runs in batches that survive interruption: each finished batch is kept on disk, a rerun of the same
job skips it, and the final file appears only when every batch is done.

A job is identified by a key: a dict of everything that determines its output (the inputs' content
fingerprints, the parameters, FORMAT). Its folder holds `job.json` (the key) and one `.npy` per finished
batch. A rerun whose key differs sets the old batches aside, saying which entries changed; a batch file that
cannot be read back is recomputed, with a warning. Nothing of another run is ever mixed in.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import PspcWarning
from . import distributed
from .atomic import atomic_path, save_npy

WORKDIR = ".pspc-work"  # under a command's output folder: finished batches, the lock
FORMAT = 2  # bump when what a batch file holds changes, so that older work is never read as new


class BatchJob:
    """Run `fn(start, stop) -> array` over [0, n) in batches, keeping finished ones under `workdir`."""

    def __init__(self, workdir: Path, key: dict, n: int, batch: int):
        self.workdir, self.n, self.batch = Path(workdir), n, max(1, batch)
        self.key = dict(key, format=FORMAT)
        self._text = json.dumps(self.key, sort_keys=True, default=str)

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return [(s, min(s + self.batch, self.n)) for s in range(0, self.n, self.batch)]

    def path(self, r: tuple[int, int]) -> Path:
        return self.workdir / f"batch_{r[0]:08d}_{r[1]:08d}.npy"

    def done(self) -> list[tuple[int, int]]:
        if not (self.workdir / "job.json").is_file() or self._stored_key() != self._text:
            return []
        return [r for r in self.ranges if self.path(r).exists()]

    def _stored_key(self) -> str | None:
        try:
            return (self.workdir / "job.json").read_text()
        except (OSError, UnicodeDecodeError):
            return None

    def prepare(self) -> None:
        """Make the folder this job's own (rank 0 of a torchrun job; the others wait)."""
        if distributed.rank_world()[0] == 0:
            stored = self._stored_key() if self.workdir.exists() else None
            if stored is not None and stored != self._text:
                kept = len(list(self.workdir.glob("batch_*.npy")))
                if kept:
                    warnings.warn(f"{self.workdir}: setting aside {kept} finished batches of an earlier run whose "
                                  f"{_changes(stored, self.key)} differ from this one's; recomputing", PspcWarning)
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir.mkdir(parents=True, exist_ok=True)
            if stored != self._text:
                with atomic_path(self.workdir / "job.json") as tmp:
                    tmp.write_text(self._text)
        distributed.barrier()

    def run(self, fn: Callable[[int, int], np.ndarray], ranges=None, on_batch: Callable | None = None) -> None:
        """Compute every missing batch of `ranges` (default: all), saving each as soon as it is done. A run that
        stops before any batch of this job is on disk leaves no work folder behind."""
        self.prepare()
        try:
            for r in ranges if ranges is not None else self.ranges:
                if not self._readable(r):
                    save_npy(self.path(r), fn(*r))
                if on_batch is not None:
                    on_batch(*r)
        except BaseException:
            if distributed.rank_world()[1] == 1 and not any(self.workdir.glob("batch_*.npy")):
                self.cleanup()
            raise

    def _readable(self, r: tuple[int, int]) -> bool:
        """Whether batch `r` is on disk and reads back whole; a damaged file is removed, with a warning."""
        path = self.path(r)
        if not path.exists():
            return False
        try:
            np.load(path, mmap_mode="r", allow_pickle=False)
            return True
        except (ValueError, OSError, EOFError):
            warnings.warn(f"batch file {path} is damaged; recomputing it", PspcWarning)
            path.unlink(missing_ok=True)
            return False

    def load(self, r: tuple[int, int]) -> np.ndarray:
        return np.load(self.path(r), allow_pickle=False)

    def gather(self) -> np.ndarray:
        return np.concatenate([self.load(r) for r in self.ranges])

    def cleanup(self) -> None:
        """Remove this job's batches, and the work folders above them that it leaves empty."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        for parent in self.workdir.parents[:2]:
            remove_if_empty(parent)


def _changes(stored: str, key: dict) -> str:
    """The names of the key's entries that differ from the stored key's (for the set-aside message)."""
    try:
        old = json.loads(stored)
    except ValueError:
        return "inputs"
    new = json.loads(json.dumps(key, sort_keys=True, default=str))
    names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(names) or "inputs"


def remove_if_empty(folder: Path) -> None:
    """Remove `folder` if it is empty; quietly nothing if it is not, or is gone (another rank removed it)."""
    try:
        if not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass


def run_in_batches(outdir: Path, stem: str, key: dict, n: int, batch: int, compute, progress: bool = True):
    """Compute [0, n) in batches under outdir/.pspc-work/stem, then write outdir/stem.npy atomically.

    Under torchrun, rank r computes batches r, r + world, ...; rank 0 gathers them in order and writes the file
    (the same bytes one process writes). Returns the gathered array on rank 0, None on the other ranks. After
    Ctrl-C the finished batches stay for a rerun to resume (KeyboardInterrupt propagates).
    """
    from .progress import Progress

    rank, world = distributed.rank_world()
    job = BatchJob(Path(outdir) / WORKDIR / stem, key, n, batch)
    mine = job.ranges[rank::world]
    done = len(set(job.done()) & set(job.ranges))  # every rank's (one output folder), said once by rank 0
    if done and rank == 0:
        print(f"resuming: {done} of {len(job.ranges)} batches of {stem} already done", file=sys.stderr)
    desc = stem if world == 1 else f"{stem} (rank 0 of {world})"
    with Progress(len(mine), desc, enable=progress and rank == 0) as bar:
        job.run(compute, ranges=mine, on_batch=lambda *_: bar.advance())
    parts = distributed.gather_merged({r: job.load(r) for r in mine} if world > 1 else {})
    outputs = None
    if rank == 0:
        final = Path(outdir) / f"{stem}.npy"
        _concatenate(final, n, [(lambda r=r: parts[r]) if world > 1 else (lambda r=r: job.load(r)) for r in job.ranges])
        outputs = np.load(final, mmap_mode="r")
    distributed.barrier()
    if rank == 0:
        job.cleanup()
    return outputs


def _concatenate(path: Path, rows: int, parts) -> None:
    """Write the concatenation of the arrays `part()` (`rows` in all) to `path` atomically, one part in memory
    at a time: the final file of a huge run never sits in memory whole. Plain writes, not a memory map: a full
    disk is then an OSError (one line), where a memory map's page faults kill the process (SIGBUS)."""
    first = parts[0]()
    header = {"descr": np.lib.format.dtype_to_descr(first.dtype), "fortran_order": False,
              "shape": (rows, *first.shape[1:])}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        for part in parts:
            block = first if part is parts[0] else part()
            f.write(np.ascontiguousarray(block, dtype=first.dtype).tobytes())
