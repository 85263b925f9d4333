"""Registers `empirical`. Imports nothing heavy: the implementation loads when the denoiser is created."""

from pspc_core import REQUIRED, Param, hookimpl


@hookimpl
def register_denoisers(register):
    register(
        "empirical",
        summary="Exact posterior mean over the training set (the optimal denoiser; it memorizes)",
        params=[
            Param("dataset", "dataset", REQUIRED, "training set: dataset object, path or builtin name"),
            Param("chunk_size", "int", 4096, "training images processed at once (bounds memory)"),
        ],
        factory="pspc_empirical.denoiser:EmpiricalDenoiser",
    )
