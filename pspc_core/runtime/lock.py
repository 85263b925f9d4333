"""One run at a time per output folder: an exclusive lock on OUTDIR/.pspc-work/lock for the whole run.

A second run into the same folder stops at once with one line naming the holder's process, instead of two
runs interleaving batch files. Folders the lock had to create are removed again if the run leaves them empty.
The lock is the operating system's (`fcntl.flock`), so it goes with the process: a killed run never leaves a
stale lock behind (its file may stay; the next run takes it over). Under torchrun only rank 0 takes it. Where
`fcntl` does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import RunError
from . import distributed
from .batches import WORKDIR, remove_if_empty


@contextmanager
def output_lock(outdir: str | os.PathLike):
    """Hold the lock of `outdir` for the duration of the block (rank 0 only under torchrun)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    if distributed.rank_world()[0] != 0:
        yield
        return
    folder = Path(outdir) / WORKDIR
    path = folder / "lock"
    made = [p for p in (folder.parent, *folder.parent.parents) if not p.exists()]  # removed again if left empty
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunError(f"another pspc run (process {holder}) is writing to {outdir}; wait for it to finish "
                           "or choose another --outdir") from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break  # the file we locked is still the lock (not one a finishing run just removed)
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        try:
            path.unlink()
        except OSError:
            pass
        os.close(fd)  # releases the lock
        for empty in (folder, *made):  # a run that wrote nothing (bad input, say) leaves no folders behind
            remove_if_empty(empty)
