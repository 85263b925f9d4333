"""PSPC-Flex defaults: the shipped heatmaps on the built-in data, and a clear error elsewhere."""

import pytest
import torch

from pspc_core import ParameterError, create_denoiser, load_dataset


def test_flex_on_builtin_data_uses_the_shipped_heatmaps():
    den = create_denoiser("pspc_flex", dataset=load_dataset("builtin:shapes", xflip=True))  # a data default
    assert tuple(den.heatmaps.shape) == (18, 32, 32, 32, 32)
    z = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(den(z, 0.3)).all()


def test_flex_without_heatmaps_on_other_data_says_how_to_get_them():
    with pytest.raises(ParameterError, match="pspc heatmaps"):
        create_denoiser("pspc_flex", dataset=load_dataset("builtin:shapes:20"))


def test_flex_reads_the_compact_npz_that_pspc_heatmaps_writes():
    from pspc_patch.shipped import HEATMAPS

    den = create_denoiser("pspc_flex", dataset=load_dataset("builtin:shapes:20"), heatmaps=str(HEATMAPS))
    assert tuple(den.heatmaps.shape) == (18, 32, 32, 32, 32)
