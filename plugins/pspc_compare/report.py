"""What studies print and write: the table of errors per noise level (the best of each row marked), its CSV,
and presets as TOML in the registry file's own schema."""

from __future__ import annotations

import math

import numpy as np
import torch


def format_table(t_grid: torch.Tensor, results: dict[str, np.ndarray]) -> str:
    """The MSE table: one row per grid point, one column per denoiser, the smallest MSE of a row marked * (every
    column that ties for it)."""
    names = list(results)
    width = max(11, *(len(n) + 2 for n in names))
    lines = [f"{'t_idx':>5} {'t':>9} " + "".join(f"{n:>{width}}" for n in names)]
    for k, t in enumerate(t_grid.tolist()):
        values = [results[n][k] for n in names]
        best = min(values)
        cells = "".join(f"{v:>{width - 1}.3e}{'*' if v == best else ' '}" for v in values)
        lines.append(f"{k:>5} {t:>9.4g} {cells}")
    return "\n".join(lines)


def write_csv(path, t_grid: torch.Tensor, results: dict[str, np.ndarray]) -> None:
    from pspc_core.runtime.atomic import atomic_path

    names = list(results)
    rows = ["t_idx,t," + ",".join(names)]
    for k, t in enumerate(t_grid.tolist()):
        rows.append(f"{k},{t:.9g}," + ",".join(f"{results[n][k]:.9g}" for n in names))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(rows) + "\n")


def toml_value(value) -> str:
    """`value` (a bool, number, string, list or table of these) as TOML, floats written to round-trip exactly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no TOML form here")
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise ValueError(f"{type(value).__name__} has no TOML form here")


def preset_toml(name: str, denoiser: str, summary: str, params: dict, calibration: dict, comment: str) -> str:
    """One `[presets.NAME]` table of a registry file (`--registry FILE --preset NAME` uses it as is)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"[presets.{name}]", f"denoiser = {toml_value(denoiser)}", f"summary = {toml_value(summary)}",
              f"params = {toml_value(params)}", f"calibration = {toml_value(calibration)}", ""]
    return "\n".join(lines)


def write_scores_csv(path, t_grid: torch.Tensor, tables: dict[str, tuple[list, np.ndarray, np.ndarray]],
                     metric: str) -> None:
    """Rows `denoiser,t_idx,t,candidate,<metric>,chosen` for every candidate of every calibrated denoiser."""
    from pspc_core.runtime.atomic import atomic_path

    rows = [f"denoiser,t_idx,t,candidate,{metric},chosen"]
    for label, (values, scores, best) in tables.items():
        for k, t in enumerate(t_grid.tolist()):
            for j, v in enumerate(values):
                rows.append(f"{label},{k},{t:.9g},{v},{scores[k, j]:.9g},{int(best[k] == j)}")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(rows) + "\n")
