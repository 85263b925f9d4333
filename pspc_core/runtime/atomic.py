"""Write files whole or not at all: to a temporary name beside the target, then rename.

Every output gets the permissions a plain new file gets (0666 less the umask), whatever library wrote the
temporary file (some write 0600).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_npy(path, array) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        np.save(tmp, np.asarray(array))


def ensure_space(folder: str | os.PathLike, nbytes: int, what: str) -> None:
    """Refuse (one line, before any work) when the disk holding `folder` has less than `nbytes` free."""
    import shutil

    from ..errors import RunError

    probe = Path(folder).resolve()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if nbytes > free:
        raise RunError(f"{what} need about {_size(nbytes)} but {probe} has {_size(free)} free; ask for less "
                       "(--n-samples) or choose another --outdir")


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000
