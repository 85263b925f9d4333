"""The PSPC-Flex heatmaps shipped for the built-in data (`builtin:shapes`): those of the network the `network`
plugin ships, [18, 32, 32, 32, 32] from `pspc heatmaps` over 304 latents per noise level, stored as 8-bit
logarithmic codes (read by `heatmap_files.load_heatmaps`)."""

from pathlib import Path

HEATMAPS = Path(__file__).resolve().parent / "assets" / "shapes-ddpmpp-heatmaps.npz"


def heatmaps_for(data) -> str | None:
    """The `heatmaps` default for the run's data: the shipped heatmaps on the built-in data, else none."""
    from pspc_core.builtin_data import asset_for

    return asset_for(data, HEATMAPS)
