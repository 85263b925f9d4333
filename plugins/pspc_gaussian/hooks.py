"""Registers `gaussian`. Imports nothing heavy: the implementation loads when the denoiser is created."""

from pspc_core import REQUIRED, Param, hookimpl


@hookimpl
def register_denoisers(register):
    register(
        "gaussian",
        summary="Posterior mean under a Gaussian fit to the training set (optionally low rank)",
        params=[
            Param("dataset", "dataset", REQUIRED, "training set: dataset object, path or builtin name"),
            Param("rank", "int", None, "principal components kept (default: all); the rest collapse to the mean"),
            Param("unbiased", "bool", False,
                  "covariance divisor N - 1 instead of N (Lukoianov et al.'s Wiener filter)"),
        ],
        factory="pspc_gaussian.denoiser:GaussianDenoiser",
    )
