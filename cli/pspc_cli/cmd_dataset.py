"""`pspc dataset make SRC OUT.zip` and `pspc dataset info PATH`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app

dataset_app = typer.Typer(help="Make and inspect training sets (EDM zip format).", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


class Split(str, Enum):
    train = "train"
    test = "test"


@dataset_app.command()
def make(
    src: Annotated[Path, typer.Argument(help="image folder, .npy/.npz uint8 array, or cifar-10-python.tar.gz")],
    out: Annotated[Path, typer.Argument(help="EDM zip to write")],
    split: Annotated[Split, typer.Option(help="CIFAR-10 archive split")] = Split.train,
    max_size: Annotated[Optional[int], typer.Option("--max-size", min=1, help="keep the first N images")] = None,
) -> None:
    """Write an EDM-format zip from a folder, an array file or the CIFAR-10 python archive."""
    from pspc_core import load_dataset
    from pspc_core.cifar_archive import read_cifar10
    from pspc_core.edm_zip import write_edm_zip
    from pspc_core.errors import DatasetError

    if out.suffix.lower() != ".zip":
        raise DatasetError(f"output {out} must end in .zip")
    if src.name.endswith((".tar.gz", ".tgz", ".tar")):
        if not src.exists():
            raise DatasetError(f"{src} does not exist; pass the path of cifar-10-python.tar.gz")
        images, labels = read_cifar10(src, split.value)
        images, labels = images[:max_size], labels[:max_size]
    else:
        ds = load_dataset(src, max_size=max_size)
        images = ds.images.numpy()
        labels = None if ds.labels is None else ds.labels.numpy()
    if images.shape[1] not in (1, 3):
        raise DatasetError(f"{src} has {images.shape[1]}-channel images; the EDM zip holds 1 (L) or 3 (RGB) channels")
    write_edm_zip(images, labels, out)
    typer.echo(f"wrote {len(images)} images {images.shape[1]}x{images.shape[2]}x{images.shape[3]} to {out}")


@dataset_app.command()
def info(path: Annotated[str, typer.Argument(help="dataset path or builtin:shapes[:N[:SEED]]")]) -> None:
    """Print size, resolution, channels and labels of a training set."""
    from pspc_core import load_dataset

    ds = load_dataset(path)
    typer.echo(f"{path}: {ds.describe()}")
    if ds.labels is not None:
        counts = ds.labels.bincount().tolist()
        typer.echo("images per class: " + ", ".join(f"{c}:{k}" for c, k in enumerate(counts)))
