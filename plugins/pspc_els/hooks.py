"""Registers `els` (ELS and boundary-broken ELS) and `ls`. Imports nothing heavy: the implementation loads when a
denoiser is created."""

from pspc_core import REQUIRED, Param, Scale, hookimpl

_SCALE = Scale("patch_sizes", "pspc_els.calibration:odd_sizes")

_SCHEDULE = [
    Param("t_grid", "list[float]", None, "the schedule's own noise levels, one per patch size (default: the EDM grid "
                                          "t_min, t_max, rho; with the default patch_sizes, the authors' 20-point grid "
                                          "tan(iπ/40.32)); the nearest one to t picks the size"),
    Param("t_min", "float", 0.002, "smallest noise level of the schedule's own EDM grid"),
    Param("t_max", "float", 80.0, "largest noise level of the schedule's own EDM grid"),
    Param("rho", "float", 7.0, "EDM grid exponent ρ"),
    Param("chunk_size", "int", None, "latent×image pairs per step on CUDA (or without numba), bounding memory at "
                                      "~1.3 MB each at 32×32 (default: 1024 on CUDA, 64 on CPU)"),
]


@hookimpl
def register_denoisers(register):
    register(
        "els",
        summary="Equivariant local score machine: each pixel from all k×k training patches (Kamb & Ganguli; "
                "boundary=zeros: boundary-broken ELS)",
        params=[
            Param("dataset", "dataset", REQUIRED, "training set: dataset object, path or builtin name"),
            Param("patch_sizes", "list[int]", None,
                  "odd patch sizes, one per point of their grid (default: the authors' CIFAR-10 ResNet schedule for "
                  "the boundary on its grid, scaled to the resolution)"),
            Param("boundary", "choice", "circular", "circular (ELS: windows wrap around) or zeros (bbELS: zero "
                  "padding, border pixels compared at their own border offset)", choices=("circular", "zeros")),
            *_SCHEDULE,
        ],
        factory="pspc_els.els:ELS",
        scale=_SCALE,
    )
    register(
        "ls",
        summary="Local score machine: each pixel from the k×k training windows at its own place (Kamb & Ganguli)",
        params=[
            Param("dataset", "dataset", REQUIRED, "training set: dataset object, path or builtin name"),
            Param("patch_sizes", "list[int]", None,
                  "odd patch sizes, one per point of their grid (default: the authors' CIFAR-10 ResNet zero-padding "
                  "schedule on its grid, scaled to the resolution)"),
            *_SCHEDULE,
        ],
        factory="pspc_els.ls:LS",
        scale=_SCALE,
    )
