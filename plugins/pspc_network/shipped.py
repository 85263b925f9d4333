"""The network shipped for the built-in data (`builtin:shapes`), so that the paper's experiment runs with no
download: a small DDPM++ (EDMPrecond + SongUNet, 0.32M parameters) trained with `pspc train` on builtin:shapes,
stored in float16. README, "How the shipped network and heatmaps were made", has the commands that reproduce it.
"""

from pathlib import Path

CHECKPOINT = Path(__file__).resolve().parent / "assets" / "shapes-ddpmpp.safetensors"


def checkpoint_for(data) -> str | None:
    """The `checkpoint` default for the run's data: the shipped network on the built-in data, else none."""
    from pspc_core.builtin_data import asset_for

    return asset_for(data, CHECKPOINT)
