"""Write the EDM dataset zip (docs/edm-networks.md, "Dataset zips"): stored PNGs `00000/img00000000.png`, … and `dataset.json`."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from .runtime.atomic import atomic_path


def archive_name(idx: int) -> str:
    s = f"{idx:08d}"
    return f"{s[:5]}/img{s}.png"


def write_edm_zip(images: np.ndarray, labels: np.ndarray | None, out) -> None:
    """Write uint8 images [N, C, R, R] (C = 1 or 3) and optional integer labels [N] as an EDM zip, atomically."""
    from PIL import Image

    entries = []
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, img in enumerate(images):
            hwc = img.transpose(1, 2, 0)
            pil = Image.fromarray(hwc[..., 0] if hwc.shape[2] == 1 else hwc)
            buf = io.BytesIO()
            pil.save(buf, format="PNG", compress_level=0)
            name = archive_name(i)
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
            entries.append(name)
        meta = {"labels": None if labels is None else [[n, int(c)] for n, c in zip(entries, labels)]}
        zf.writestr(zipfile.ZipInfo("dataset.json", date_time=(1980, 1, 1, 0, 0, 0)), json.dumps(meta))
