"""Training sets as one uint8 tensor [N, C, R, R]: EDM zips, image folders, .npy/.npz arrays, built-in sets."""

from __future__ import annotations

import io
import json
import os
import sys
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


MAX_CLASS = 999_999  # a million classes; a larger label is a broken file, and one-hot labels of it would not fit
LABELS_FORM = ('write {"labels": [["00000/img00000000.png", 0], ...]}, one [image, class] pair per image with '
               f'classes 0 to {MAX_CLASS}, or {{"labels": null}}')


def _labels(meta, names: list[str], where: str):
    """Classes [N], in the order of `names`, from the dataset.json `meta` (EDM's {"labels": [[image, class], ...]}
    or {"labels": null}). Anything else is refused at its first bad entry: a label dropped, rounded or given to
    the wrong image would silently train and evaluate on the wrong classes."""

    def refuse(problem: str) -> DatasetError:
        return DatasetError(f"{where}: {problem}; {LABELS_FORM}")

    if not isinstance(meta, dict):
        raise refuse(f"holds {_kind(meta)}, not an object")
    if "labels" not in meta:
        raise refuse('has no "labels" key')
    entries = meta["labels"]
    if entries is None or not names:  # no images: `_stack` says so
        return None
    if not isinstance(entries, list):
        raise refuse(f'"labels" is {_kind(entries)}, not a list')
    images, table, width = set(names), {}, None
    for i, entry in enumerate(entries):
        at = f"labels[{i}] = {_short(entry)}"
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise refuse(f"{at} is not an [image, class] pair")
        name, label = entry
        if name not in images:
            raise refuse(f"{at} names {name}, which is not one of the dataset's images")
        if name in table:
            raise refuse(f"{at} labels {name} a second time")
        kind = _class_of(label)
        if kind is None:
            raise refuse(f"{at} has class {_short(label)}, not a whole number from 0 to {MAX_CLASS}")
        if width is not None and kind[1] != width:
            raise refuse(f"{at} has a label of another form than labels[0]")
        table[name], width = kind
    missing = next((n for n in names if n not in table), None)
    if missing is not None:
        raise refuse(f"image {missing} has no label")
    return np.asarray([table[n] for n in names], dtype=np.int64)


def _class_of(label) -> tuple[int, int] | None:
    """(class, 0) of a whole number 0..MAX_CLASS (`2.0` is 2; `true` and `1.5` are no class), or (index of the
    largest entry, length) of a vector of numbers (EDM's reader accepts such soft labels); None for anything else."""
    if _is_number(label):
        return (int(label), 0) if 0 <= label <= MAX_CLASS and label == int(label) else None
    if isinstance(label, list) and 0 < len(label) <= MAX_CLASS + 1 and all(_is_number(v) for v in label):
        return int(np.argmax(label)), len(label)
    return None


def _is_number(value) -> bool:
    """A finite JSON number (bools are ints to Python, not numbers to JSON)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= sys.float_info.max


def _kind(value) -> str:
    """The JSON name of `value`'s type, for messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "null")


def _short(value, limit: int = 60) -> str:
    """`value` as JSON, cut to `limit` characters, to quote an entry in a message."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_MEMBER = 64 << 20  # one image or dataset.json: CIFAR-10's 100k labels take 4 MB; more is a broken file


def _check_size(size: int, name: str) -> None:
    if size > MAX_MEMBER:
        raise DatasetError(f"{name} claims {size / 2**20:.0f} MB, over the {MAX_MEMBER >> 20} MB a dataset file "
                           "holds; rebuild the dataset with `pspc dataset make`")


def _read_json(data: bytes, name: str):
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than any dataset.json
        raise DatasetError(f"{name} is not valid JSON; fix or remove it") from None


def _read_zip(path: Path):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise DatasetError(f"dataset {path} is not a readable zip file; rebuild it with `pspc dataset make`") from None
    with zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(IMAGE_SUFFIXES))
        labels = None
        if "dataset.json" in zf.namelist():
            where = f"{path}:dataset.json"
            _check_size(zf.getinfo("dataset.json").file_size, where)
            labels = _labels(_read_json(zf.read("dataset.json"), where), names, where)
        arrays = []
        for n in names:
            _check_size(zf.getinfo(n).file_size, f"{path}:{n}")
            try:
                data = zf.read(n)
            except (zipfile.BadZipFile, OSError, EOFError):
                raise DatasetError(f"image {path}:{n} is unreadable or corrupt; rebuild the zip") from None
            arrays.append(_decode(data, f"{path}:{n}"))
    return _stack(arrays, names, str(path)), labels


def _read_folder(path: Path):
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    names = [f.relative_to(path).as_posix() for f in files]
    meta_file = path / "dataset.json"
    if meta_file.exists():
        _check_size(meta_file.stat().st_size, str(meta_file))
        labels = _labels(_read_json(meta_file.read_bytes(), str(meta_file)), names, str(meta_file))
    else:
        labels = _folder_labels(names)
    for f in files:
        _check_size(f.stat().st_size, str(f))
    arrays = [_decode(f.read_bytes(), str(f)) for f in files]
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
        arr, labels = _load_arrays(path)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # also object arrays, damaged .npz members
        raise DatasetError(f"dataset {path} is not a readable numpy file ({exc}); re-save it with numpy") from None
    if arr.dtype != np.uint8:
        raise DatasetError(f"dataset {path} holds {arr.dtype} values; save uint8 images (0..255)")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise DatasetError(f"dataset {path} has shape {arr.shape}; expected [N,C,R,R] or [N,R,R,C]")
    if arr.shape[2] != arr.shape[3] and arr.shape[1] == arr.shape[2]:  # channels last
        arr = arr.transpose(0, 3, 1, 2)
    if labels is not None:
        _check_array_labels(labels, len(arr), path)
    return arr, labels


def _load_arrays(path: Path):
    """(images, labels or None) as stored in a .npy or .npz file, unchecked."""
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        return data, None
    with data:
        keys = data.files
        key = next((k for k in ("images", "x", "arr_0") if k in keys), keys[0] if len(keys) == 1 else None)
        if key is None:
            raise DatasetError(f"dataset {path} has arrays {keys}; name the image array 'images'")
        return data[key], data["labels"] if "labels" in keys else None


def _check_array_labels(labels: np.ndarray, n: int, path: Path) -> None:
    """An array file's labels are one integer class 0..MAX_CLASS per image, as dataset.json's."""
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise DatasetError(f"dataset {path} has {labels.dtype} labels of shape {labels.shape}; save one integer "
                           f"class per image, shape ({n},)")
    if n and not 0 <= labels.min() <= labels.max() <= MAX_CLASS:
        raise DatasetError(f"dataset {path} has classes from {labels.min()} to {labels.max()}; number them from 0 "
                           f"to at most {MAX_CLASS}")
