"""Registers `pca_locality`. Imports nothing heavy: the implementation loads when the denoiser is created."""

from pspc_core import REQUIRED, Param, Scale, hookimpl


@hookimpl
def register_denoisers(register):
    register(
        "pca_locality",
        summary="PCA-locality: per-pixel posteriors over the pixels the Wiener filter ties to it (Lukoianov et al.)",
        params=[
            Param("dataset", "dataset", REQUIRED, "training set: dataset object, path or builtin name"),
            Param("threshold", "list[float]", 0.05, "τ in (0, 1]: keep Wiener-filter entries ≥ τ of the largest "
                                                    "(row-normalised); one value, or one per point of its grid"),
            Param("temperature", "float", 1.0, "T > 0 dividing the logits (1: the posterior of masked distances)"),
            Param("masks", "path", None, ".npz with t [L] and masks [L, D, D] bool [input, output], used at the "
                                         "nearest t (default: computed in float64 per noise level)"),
            Param("t_grid", "list[float]", None, "the threshold schedule's own noise levels (default: the EDM "
                                                  "grid t_min, t_max, rho of its length)"),
            Param("t_min", "float", 0.002, "smallest noise level of the schedule's EDM grid"),
            Param("t_max", "float", 80.0, "largest noise level of the schedule's EDM grid"),
            Param("rho", "float", 7.0, "EDM grid exponent ρ"),
        ],
        factory="pspc_pca_locality.denoiser:PCALocality",
        scale=Scale("threshold", "pspc_pca_locality.calibration:candidates"),
    )
