"""Long runs in batches that survive interruption: each finished batch is kept on disk, a rerun of the same
job skips it, and the final file appears only when every batch is done.

A job is identified by a key (a dict of everything that determines its output); a work folder holding another
key's batches is cleared rather than mixed in.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import atomic_path, save_npy


class BatchJob:
    """Run `fn(start, stop) -> array` over [0, n) in batches, keeping finished ones under `workdir`."""

    def __init__(self, workdir: Path, key: dict, n: int, batch: int):
        self.workdir, self.n, self.batch = Path(workdir), n, max(1, batch)
        self.key = json.dumps(key, sort_keys=True, default=str)
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:16]
        self.workdir = self.workdir / digest

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return [(s, min(s + self.batch, self.n)) for s in range(0, self.n, self.batch)]

    def _batch_path(self, start: int, stop: int) -> Path:
        return self.workdir / f"batch_{start:08d}_{stop:08d}.npy"

    def done(self) -> list[tuple[int, int]]:
        return [r for r in self.ranges if self._batch_path(*r).exists()]

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        keyfile = self.workdir / "job.json"
        if keyfile.exists() and keyfile.read_text() != self.key:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir.mkdir(parents=True, exist_ok=True)
        with atomic_path(keyfile) as tmp:
            tmp.write_text(self.key)

    def run(self, fn: Callable[[int, int], np.ndarray], ranges=None, on_batch: Callable | None = None) -> None:
        """Compute every missing batch of `ranges` (default: all), saving each as soon as it is done."""
        self.prepare()
        for start, stop in ranges if ranges is not None else self.ranges:
            path = self._batch_path(start, stop)
            if not path.exists():
                save_npy(path, fn(start, stop))
            if on_batch is not None:
                on_batch(start, stop)

    def load(self, r: tuple[int, int]) -> np.ndarray:
        return np.load(self._batch_path(*r))

    def gather(self) -> np.ndarray:
        return np.concatenate([self.load(r) for r in self.ranges])

    def cleanup(self) -> None:
        """Remove this job's batches, and the folders above them that it leaves empty."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        for parent in self.workdir.parents[:2]:
            remove_if_empty(parent)


def remove_if_empty(folder: Path) -> None:
    """Remove `folder` if it is empty; quietly nothing if it is not, or is gone (another rank removed it)."""
    try:
        if not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass
