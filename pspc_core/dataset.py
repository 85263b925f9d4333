"""Training sets as one uint8 tensor [N, C, R, R]: EDM zips, image folders, .npy/.npz arrays, built-in sets."""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BUILTIN_PREFIX = "builtin:"


@dataclass
class Dataset:
    """Images [N, C, R, R] uint8 (flipped copies appended when `xflip`), optional integer labels [N]."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    source: str = ""
    xflip: bool = False
    cache: dict = field(default_factory=dict, repr=False)  # derived statistics, keyed by their users

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def label_dim(self) -> int:
        return 0 if self.labels is None else int(self.labels.max()) + 1

    def float_chunks(self, chunk: int, device=None, dtype=torch.float32):
        """Yield (start, images as x = v/127.5 - 1) chunk by chunk, never the whole set in float."""
        for start in range(0, len(self), chunk):
            block = self.images[start : start + chunk].to(device=device, non_blocking=True)
            yield start, block.to(dtype) / 127.5 - 1

    def describe(self) -> str:
        labels = "none" if self.labels is None else f"{self.label_dim} classes"
        flip = " (with x-flips)" if self.xflip else ""
        return f"{len(self)} images{flip}, {self.channels}x{self.resolution}x{self.resolution}, labels: {labels}"


def load_dataset(path, xflip: bool = False, max_size: int | None = None) -> Dataset:
    """Load a training set from an EDM zip, a folder of PNG/JPEG files, a .npy/.npz uint8 array or `builtin:NAME`.

    `xflip` appends a horizontally flipped copy of every image (N doubles), as EDM and the paper do.
    `max_size` keeps the first `max_size` images (before flipping).
    """
    source = os.fspath(path)
    if source.startswith(BUILTIN_PREFIX):
        from .builtin_data import make_builtin

        images, labels = make_builtin(source[len(BUILTIN_PREFIX) :])
    else:
        p = Path(source)
        if not p.exists():
            raise DatasetError(f"dataset {source} does not exist; pass an EDM zip, an image folder, a .npy/.npz file or builtin:shapes")
        if p.is_dir():
            images, labels = _read_folder(p)
        elif p.suffix.lower() == ".zip":
            images, labels = _read_zip(p)
        elif p.suffix.lower() in (".npy", ".npz"):
            images, labels = _read_array(p)
        else:
            raise DatasetError(f"dataset {source}: unsupported file type {p.suffix!r}; use a .zip, a folder, .npy or .npz")
    if max_size is not None:
        images = images[:max_size]
        labels = None if labels is None else labels[:max_size]
    _check_images(images, source)
    images_t = torch.from_numpy(np.ascontiguousarray(images))
    labels_t = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if xflip:
        images_t = torch.cat([images_t, images_t.flip(-1)])
        labels_t = None if labels_t is None else torch.cat([labels_t, labels_t])
    return Dataset(images_t, labels_t, source, xflip)


def as_dataset(value, xflip: bool = False) -> Dataset:
    """A Dataset as-is, or one loaded from a path or built-in name."""
    return value if isinstance(value, Dataset) else load_dataset(value, xflip=xflip)


def _check_images(images: np.ndarray, source: str) -> None:
    if images.shape[0] == 0:
        raise DatasetError(f"dataset {source} holds no images; point it at a non-empty set")
    if images.shape[1] > 4:
        raise DatasetError(f"dataset {source} has {images.shape[1]} channels; at most 4 are supported")
    if images.shape[-1] != images.shape[-2]:
        raise DatasetError(f"dataset {source} has non-square {images.shape[-2]}x{images.shape[-1]} images; crop them square")


def _decode(data: bytes, name: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.mode else "RGB")
            arr = np.asarray(im)
    except Exception as exc:
        raise DatasetError(f"image {name} is unreadable or corrupt ({type(exc).__name__}); remove or replace it") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _stack(arrays: list[np.ndarray], names: list[str], source: str) -> np.ndarray:
    if not arrays:
        raise DatasetError(f"dataset {source} holds no PNG/JPEG images; point it at a non-empty set")
    first = arrays[0].shape
    for a, n in zip(arrays, names):
        if a.shape != first:
            raise DatasetError(
                f"dataset {source} mixes image sizes: {names[0]} is {_fmt(first)} but {n} is {_fmt(a.shape)}; "
                "resize them to one size"
            )
    return np.stack(arrays)


def _fmt(shape) -> str:
    return f"{shape[0]}x{shape[1]}x{shape[2]} (CxHxW)"


def _labels(meta: dict | None, names: list[str]):
    if not meta or meta.get("labels") is None:
        return None
    table = {n: lab for n, lab in meta["labels"]}
    if not all(n in table for n in names):
        return None
    vals = [table[n] for n in names]
    if vals and isinstance(vals[0], (list, tuple)):  # float label vectors: keep the argmax class
        vals = [int(np.argmax(v)) for v in vals]
    return np.asarray(vals, dtype=np.int64)


MAX_MEMBER = 64 << 20  # one image or dataset.json: CIFAR-10's 100k labels take 4 MB; more is a broken file


def _check_size(size: int, name: str) -> None:
    if size > MAX_MEMBER:
        raise DatasetError(f"{name} claims {size / 2**20:.0f} MB, over the {MAX_MEMBER >> 20} MB a dataset file "
                           "holds; rebuild the dataset with `pspc dataset make`")


def _read_json(data: bytes, name: str) -> dict:
    try:
        return json.loads(data)
    except ValueError:
        raise DatasetError(f"{name} is not valid JSON; fix or remove it") from None


def _read_zip(path: Path):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise DatasetError(f"dataset {path} is not a readable zip file; rebuild it with `pspc dataset make`") from None
    with zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(IMAGE_SUFFIXES))
        meta = None
        if "dataset.json" in zf.namelist():
            _check_size(zf.getinfo("dataset.json").file_size, f"{path}:dataset.json")
            meta = _read_json(zf.read("dataset.json"), f"{path}:dataset.json")
        arrays = []
        for n in names:
            _check_size(zf.getinfo(n).file_size, f"{path}:{n}")
            try:
                data = zf.read(n)
            except (zipfile.BadZipFile, OSError, EOFError):
                raise DatasetError(f"image {path}:{n} is unreadable or corrupt; rebuild the zip") from None
            arrays.append(_decode(data, f"{path}:{n}"))
    return _stack(arrays, names, str(path)), _labels(meta, names)


def _read_folder(path: Path):
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    names = [f.relative_to(path).as_posix() for f in files]
    meta_file = path / "dataset.json"
    meta = None
    if meta_file.exists():
        _check_size(meta_file.stat().st_size, str(meta_file))
        meta = _read_json(meta_file.read_bytes(), str(meta_file))
    for f in files:
        _check_size(f.stat().st_size, str(f))
    arrays = [_decode(f.read_bytes(), str(f)) for f in files]
    labels = _labels(meta, names) if meta is not None else _folder_labels(names)
    return _stack(arrays, names, str(path)), labels


def _folder_labels(names: list[str]):
    """Classes from top-level sub-folder names (sorted, numbered), when every image has one and there are two+."""
    tops = [n.split("/")[0] if "/" in n else None for n in names]
    classes = sorted(set(tops))
    if None in classes or len(classes) < 2:
        return None
    return np.asarray([classes.index(c) for c in tops], dtype=np.int64)


def _read_array(path: Path):
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"dataset {path} is not a readable numpy file ({exc}); re-save it with numpy") from None
    labels = None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            keys = data.files
            key = next((k for k in ("images", "x", "arr_0") if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise DatasetError(f"dataset {path} has arrays {keys}; name the image array 'images'")
            arr = data[key]
            labels = data["labels"] if "labels" in keys else None
    else:
        arr = data
    if arr.dtype != np.uint8:
        raise DatasetError(f"dataset {path} holds {arr.dtype} values; save uint8 images (0..255)")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise DatasetError(f"dataset {path} has shape {arr.shape}; expected [N,C,R,R] or [N,R,R,C]")
    if arr.shape[2] != arr.shape[3] and arr.shape[1] == arr.shape[2]:  # channels last
        arr = arr.transpose(0, 3, 1, 2)
    return arr, labels
