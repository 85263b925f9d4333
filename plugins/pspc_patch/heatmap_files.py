"""PSPC-Flex heatmap files: the one reader and writer of heatmaps [L, R, R, R, R] (index [t index, y, x, i, j]).

Formats, recognised by suffix:
- `.npy`: a float array in the paper's layout, as the paper ships (no grid).
- `.safetensors`: tensor `heatmaps` (or the file's only tensor) and optionally the grid `t`; metadata
  `pspc_heatmaps` = JSON (what `pspc heatmaps` computed, on which grid). float32, or float16 with each map scaled
  to a maximum of 1 (PSPC-Flex normalises every map, so only its shape matters).
- `.npz` (compact, for shipping): each map as 8-bit logarithmic codes of its values relative to its maximum
  (`encode_log8`: a relative step of 4.6 %, values below 1e-5 of the maximum stored as 0), zip-compressed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from pspc_core.errors import ParameterError, ShapeError
from pspc_core.runtime.numpy_files import read_npy, read_npz

HEATMAP_KEY = "heatmaps"


def save_heatmaps(path, heatmaps: torch.Tensor, t_grid: torch.Tensor, meta: dict | None = None,
                  float16: bool = False) -> None:
    """Write heatmaps [L, R, R, R, R] and the grid t [L].

    `.safetensors`: tensors `heatmaps` (float32, or float16 with each map scaled to a maximum of 1) and `t`,
    metadata `pspc_heatmaps` = JSON. `.npz` (compact, for shipping): each map as 8-bit logarithmic codes of its
    values relative to its maximum, see `encode_log8`, zip-compressed.
    """
    from pspc_core.runtime.atomic import atomic_path

    h = heatmaps.detach().cpu().float().contiguous()
    t = torch.as_tensor(t_grid, dtype=torch.float64).cpu().contiguous()
    meta_json = json.dumps(meta or {}, default=str)
    if Path(path).suffix == ".npz":
        codes, scale = encode_log8(h)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, codes=codes, scale=scale, floor=np.float64(LOG8_FLOOR), t=t.numpy(),
                                    meta=np.array(meta_json))
        return
    from safetensors.torch import save_file

    if float16:  # keep the maps' shape, not their scale: normalise so each map's largest value is 1
        h = (h / h.flatten(3).amax(-1)[..., None, None].clamp_min(1e-30)).to(torch.float16)
    with atomic_path(path) as tmp:
        save_file({HEATMAP_KEY: h, "t": t}, str(tmp), metadata={"pspc_heatmaps": meta_json})


LOG8_FLOOR = 1e-5  # values below this fraction of their map's maximum are stored as 0


def encode_log8(h: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(codes uint8 [..., R, R], scale float32 [...]): code 0 for h < floor·max, else
    1 + round(254 · ln(h / (floor·max)) / ln(1/floor)); a relative step of floor^(-1/254) (4.6 %)."""
    scale = h.flatten(-2).amax(-1).clamp_min(1e-30)
    rel = h / scale[..., None, None]
    level = torch.log(rel.clamp_min(LOG8_FLOOR) / LOG8_FLOOR) / -np.log(LOG8_FLOOR)
    codes = torch.where(rel >= LOG8_FLOOR, 1 + torch.round(254 * level), torch.zeros(()))
    return codes.clamp(0, 255).to(torch.uint8).numpy(), scale.numpy().astype(np.float32)


def decode_log8(codes: np.ndarray, scale: np.ndarray, floor: float = LOG8_FLOOR) -> torch.Tensor:
    c = torch.from_numpy(np.asarray(codes)).float()
    values = torch.exp((c - 1) / 254 * -np.log(floor)) * floor
    return torch.where(c > 0, values, torch.zeros(())) * torch.from_numpy(np.asarray(scale, np.float32))[..., None, None]


def load_heatmaps(source, resolution: int | None = None) -> tuple[torch.Tensor, dict]:
    """(heatmaps [L, R, R, R, R] float32, metadata) from a file in any of the formats above, or an array/tensor
    given directly (metadata {}). Where the file stores the grid (`.safetensors`, `.npz`), metadata["t"] is it, a
    list of L floats (the noise level of each map). A missing, unreadable or misshapen file (R other than
    `resolution`, when given) is a one-line error."""
    if not isinstance(source, (str, os.PathLike)):
        h, meta = torch.as_tensor(source if torch.is_tensor(source) else np.asarray(source)).float(), {}
    else:
        path = Path(source)
        if not path.is_file():
            raise ParameterError(f"heatmaps file {path} does not exist; pass a .npy, .safetensors or .npz file "
                                 "[L,R,R,R,R] (compute one with `pspc heatmaps`)")
        h, meta = _READERS.get(path.suffix.lower(), _unsupported)(path)
    R = resolution or (h.shape[-1] if h.ndim else 0)
    if h.ndim != 5 or tuple(h.shape[1:]) != (R,) * 4:
        need = f"{R}x{R} data needs [L, {R}, {R}, {R}, {R}]; compute heatmaps at the dataset's resolution" \
            if resolution else "expected [L, R, R, R, R]"
        raise ShapeError(f"heatmaps have shape {tuple(h.shape)}; {need}")
    return h, meta


def _read_npy(path: Path):
    return torch.from_numpy(read_npy(path, "heatmaps").astype(np.float32, copy=False)), {}


def _read_npz(path: Path):
    f = read_npz(path, ("meta", "t", "codes", "scale", "floor"), "heatmaps")
    try:
        meta = json.loads(str(f["meta"]))
        if "t" in f:
            meta["t"] = [float(v) for v in np.asarray(f["t"], np.float64).ravel()]
        return decode_log8(f["codes"], f["scale"], float(f["floor"])), meta
    except (ValueError, KeyError):
        raise ParameterError(f"heatmaps file {path} is not a heatmap .npz written by `pspc heatmaps`") from None


def _read_safetensors(path: Path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            key = HEATMAP_KEY if HEATMAP_KEY in keys else keys[0] if len(keys) == 1 else None
            if key is None:
                raise ParameterError(f"heatmaps file {path} holds tensors {sorted(keys)}; name the heatmaps "
                                     f"{HEATMAP_KEY!r}")
            meta = json.loads((f.metadata() or {}).get("pspc_heatmaps", "{}"))
            if "t" in keys and key != "t":
                meta["t"] = f.get_tensor("t").double().flatten().tolist()
            return f.get_tensor(key).float(), meta
    except ParameterError:
        raise
    except Exception as exc:
        raise ParameterError(f"heatmaps file {path} is not a readable safetensors file ({type(exc).__name__})") from None


def _unsupported(path: Path):
    raise ParameterError(f"heatmaps file {path}: unsupported type {path.suffix!r}; use .npy, .safetensors or .npz")


_READERS = {".npy": _read_npy, ".npz": _read_npz, ".safetensors": _read_safetensors}
