"""Read the CIFAR-10 python archive (`cifar-10-python.tar.gz`) without trusting its pickles.

Its batches are pickled dicts of numpy arrays. A pickle can name any global and so run any code; the reader
admits only plain containers and the numpy globals that rebuild an array, and refuses everything else.
"""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np

from .errors import DatasetError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}

SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise DatasetError(f"the CIFAR archive's pickle asks for {module}.{name}; refusing to load it (not a plain CIFAR-10 batch)")
        return super().find_class(module, name)


def load_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch: images [n, 3, 32, 32] uint8 and labels [n]."""
    try:
        d = _ArrayOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"CIFAR batch {name} is unreadable ({type(exc).__name__}); re-download the archive") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DatasetError(f"CIFAR batch {name} lacks 'data' or 'labels'; is this cifar-10-python.tar.gz?")
    images = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, np.asarray(d[b"labels"], dtype=np.int64)


def read_cifar10(path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """All images and labels of `split` ('train' or 'test') from the archive, in batch order."""
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError):
        raise DatasetError(f"{path} is not a readable tar archive; pass cifar-10-python.tar.gz") from None
    wanted = SPLITS[split]
    found: dict[str, bytes] = {}
    with tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if base in wanted and member.isfile():
                found[base] = tar.extractfile(member).read()
    missing = [w for w in wanted if w not in found]
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(missing)}; pass the CIFAR-10 python archive")
    parts = [load_batch(found[w], w) for w in wanted]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
