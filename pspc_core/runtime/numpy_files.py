"""A user's .npy / .npz file read whatever it really holds: one line that names the problem, never numpy's own
message (text read as a "pickle") or a traceback (an .npz handed back where an array was expected, or the reverse).
Pickles are never loaded."""

from __future__ import annotations

import zipfile

import numpy as np

from pspc_core.errors import ParameterError


def read_npy(path, what: str) -> np.ndarray:
    """The array of an .npy file; `what` names the file in the error ("heatmaps file ...")."""
    if zipfile.is_zipfile(path):
        raise ParameterError(f"{what} file {path} is an .npz archive, not an .npy array; save the array with "
                             "numpy.save")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise ParameterError(f"{what} file {path} is not a readable .npy array; save it with numpy.save") from None


def read_npz(path, keys, what: str) -> dict[str, np.ndarray]:
    """{key: array} for those of `keys` that the .npz archive holds."""
    if not zipfile.is_zipfile(path):
        raise ParameterError(f"{what} file {path} is not an .npz archive; save its arrays with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in keys if k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise ParameterError(f"{what} file {path} holds an unreadable array; re-save it with numpy.savez") from None
