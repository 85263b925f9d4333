"""Shared fixtures: the ../shared folder (skipped cleanly where absent) and small datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import SHARED


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "reference").is_dir():
        pytest.skip("../shared (reference outputs and CIFAR-10 subsets) is not beside this checkout")
    return SHARED


@pytest.fixture(scope="session")
def cifar1k(shared):
    from pspc_core import load_dataset

    return load_dataset(shared / "data" / "cifar10-train-1k-32.zip", xflip=True)


@pytest.fixture(scope="session")
def exp_a(shared):
    return dict(np.load(shared / "reference" / "pspc" / "exp_a_cifar32.npz"))


@pytest.fixture(scope="session")
def exp_c(shared):
    return dict(np.load(shared / "reference" / "pspc" / "exp_c_sampling16.npz"))


@pytest.fixture(scope="session")
def cifar200_16(shared):
    from pspc_core import load_dataset

    return load_dataset(shared / "data" / "cifar10-train-200-16.zip", xflip=True)


@pytest.fixture(scope="session")
def peers200(shared):
    """The peers' reference setting: their outputs were computed on these 200 images without x-flips."""
    from pspc_core import load_dataset

    return load_dataset(shared / "data" / "cifar10-train-200-16.zip")


@pytest.fixture
def one_torch_thread():
    """For many tiny torch calls: intra-op threads only add barrier waits there (long ones on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_dataset():
    """A random 8x8 RGB set of 50 images (random pixels: neighbours are far apart)."""
    import torch

    from pspc_core import Dataset

    g = torch.Generator().manual_seed(0)
    return Dataset(torch.randint(0, 256, (50, 3, 8, 8), generator=g, dtype=torch.uint8))
