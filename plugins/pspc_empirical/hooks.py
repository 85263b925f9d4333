"""Registers `empirical`. Imports nothing heavy: the implementation loads when the denoiser is created."""

from pspc_core import REQUIRED, Param, hookimpl


@hookimpl
def register_denoisers(register):
    register(
        "empirical",
        summary="Exact posterior mean over the training set (the optimal denoiser; it memorizes)",
        params=[
            Param("dataset", "dataset", REQUIRED, "training set: dataset object, path or builtin name"),
            Param("chunk_size", "int", None, "training images processed at once, bounding memory (default: 2^20 "
                                              "latent×image pairs' worth on the CPU, 4096 images elsewhere)"),
        ],
        factory="pspc_empirical.denoiser:EmpiricalDenoiser",
    )
