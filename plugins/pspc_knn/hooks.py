"""Registers `knn`. Imports nothing heavy: the implementation loads when the denoiser is created."""

from pspc_core import REQUIRED, Param, hookimpl


@hookimpl
def register_denoisers(register):
    register(
        "knn",
        summary="kNN estimator: the empirical denoiser importance-sampled from the k nearest images (Niedoba et al.)",
        params=[
            Param("dataset", "dataset", REQUIRED, "training set: dataset object, path or builtin name"),
            Param("k", "int", 2048, "nearest neighbours in the proposal (1 ≤ k < N)"),
            Param("n", "int", 256, "draws from the proposal per latent and call"),
            Param("seed", "int", 0, "seed of the draws; with the latent and t it fixes them (batch-independent)"),
        ],
        factory="pspc_knn.denoiser:KNNDenoiser",
    )
