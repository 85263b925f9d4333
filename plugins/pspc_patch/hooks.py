"""Registers `pspc_sq` and `pspc_flex`. Imports nothing heavy: the implementation loads when a denoiser is created."""

from pspc_core import REQUIRED, Param, Scale, hookimpl

from .chunking import DEFAULT_CHUNK

_GRID = [
    Param("t_grid", "list[float]", None, "the schedule's own noise levels, one per value (default: the EDM grid "
                                          "t_min, t_max, rho); the nearest one to t picks the value"),
    Param("t_min", "float", 0.002, "smallest noise level of the schedule's own EDM grid (pspc_flex: of the "
                                    "heatmaps' too when their file stores none)"),
    Param("t_max", "float", 80.0, "largest noise level of the schedule's own EDM grid (and the heatmaps')"),
    Param("rho", "float", 7.0, "EDM grid exponent ρ"),
    Param("chunk_size", "int", None, "latent×image pairs per step of the torch passes (CUDA, or a CPU without "
                                      f"numba), ~60 bytes × R² each (default: {DEFAULT_CHUNK['cpu']} on CPU, "
                                      f"{DEFAULT_CHUNK['cuda']} on CUDA)"),
]


@hookimpl
def register_denoisers(register):
    register(
        "pspc_sq",
        summary="PSPC-Square: average of k×k patch posteriors, k chosen by t from a schedule (Niedoba et al.)",
        params=[
            Param("dataset", "dataset", REQUIRED, "training set: dataset object, path or builtin name"),
            Param("patch_sizes", "list[int]", None,
                  "one patch size per point of its own EDM grid (default: the paper's CIFAR-10 schedule "
                  "32,32,32,32,32,32,32,23,15,11,7,5,3,3,3,3,3,3 scaled to the resolution)"),
            *_GRID,
        ],
        factory="pspc_patch.square:PSPCSquare",
        scale=Scale("patch_sizes", "pspc_patch.calibration:square_candidates"),
    )
    register(
        "pspc_flex",
        summary="PSPC-Flex: average of posteriors over heatmap crops, one per pixel, thresholded by t",
        params=[
            Param("dataset", "dataset", REQUIRED, "training set: dataset object, path or builtin name"),
            Param("heatmaps", "path", None, "sensitivity heatmaps [L,R,R,R,R] (.npy as the paper ships, .safetensors or "
                  "a `pspc heatmaps` .npz) on their own grid: the one the file stores, else the EDM grid of L "
                  "points; on builtin:shapes those of its shipped network",
                  data_default="pspc_patch.shipped:heatmaps_for"),
            Param("thresholds", "list[float]", None,
                  "mass λ in (0,1] kept per point of its own grid (t_grid, else the EDM grid of that many "
                  "points); one value for every t, else one per heatmap level unless t_grid is given (default: "
                  "the paper's CIFAR-10 1,1,1,1,1,1,1,0.7,0.7,0.5,0.4,0.4,0.4,0.4,0.3,0.3,0.3,0.3)"),
            *_GRID,
        ],
        factory="pspc_patch.flex:PSPCFlex",
        scale=Scale("thresholds", "pspc_patch.calibration:flex_candidates"),
    )
