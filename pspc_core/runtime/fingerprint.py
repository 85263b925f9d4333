"""Content fingerprints of a run's inputs, for its resume key: the same path with other content is another input.

A file's fingerprint is its size, modification time and a BLAKE2b hash of its bytes (about 1 GB/s, computed
once per process and file version); a dataset's is the hash of its decoded images and labels, which covers
every format (zip, folder, array, built-in) by what the denoisers actually see.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CACHE: dict[tuple, str] = {}
CHUNK = 1 << 22


def file_fingerprint(path: str | os.PathLike) -> dict:
    """{path, size, mtime_ns, blake2b} of a file (a folder: of every file below it, in sorted order)."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.blake2b(digest_size=16)
    size = mtime = 0
    for f in files:
        st = f.stat()
        size, mtime = size + st.st_size, max(mtime, st.st_mtime_ns)
        digest.update(str(f.relative_to(path) if f != path else "").encode())
        digest.update(_file_hash(f, st).encode())
    return {"path": str(path), "size": size, "mtime_ns": mtime, "blake2b": digest.hexdigest()}


def _file_hash(path: Path, st: os.stat_result) -> str:
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)  # ctime: any rewrite changes it
    if key not in _CACHE:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                h.update(block)
        _CACHE[key] = h.hexdigest()
    return _CACHE[key]


def dataset_fingerprint(dataset) -> dict:
    """{source, n, shape, xflip, blake2b} of a loaded Dataset (images and labels), cached on the dataset."""
    if "fingerprint" not in dataset.cache:
        h = hashlib.blake2b(digest_size=16)
        h.update(dataset.images.contiguous().numpy().data)
        if dataset.labels is not None:
            h.update(dataset.labels.contiguous().numpy().data)
        dataset.cache["fingerprint"] = {"source": str(dataset.source), "n": len(dataset),
                                        "shape": list(dataset.images.shape[1:]), "xflip": dataset.xflip,
                                        "blake2b": h.hexdigest()}
    return dataset.cache["fingerprint"]
