"""Registers the `network` denoiser and the `convert` command. Imports nothing heavy: the implementation loads
when the denoiser is created or the command runs."""

from pspc_core import Param, hookimpl


@hookimpl
def register_denoisers(register):
    register(
        "network",
        summary="A trained EDM network (official .pkl, loaded without running its code, or pspc .safetensors)",
        params=[
            Param("checkpoint", "path", None,
                  "EDM network .pkl (e.g. edm-cifar10-32x32-uncond-vp.pkl) or a .safetensors from `pspc convert`; "
                  "on builtin:shapes the small network shipped for it",
                  data_default="pspc_network.shipped:checkpoint_for"),
            Param("class_label", "str", "random",
                  "conditional nets: a class index, indices 0,3,9 (one per latent), 'random' (one per latent, "
                  "from label_seed) or 'none' (official no-label behaviour); unconditional nets take no index"),
            Param("force_fp32", "bool", False, "run in float32 even where the checkpoint asks for fp16 on CUDA"),
            Param("label_seed", "int", 0, "seed of the 'random' class labels"),
            Param("allow_modified_source", "bool", False,
                  "load an EDM .pkl whose embedded network source is not that of an official EDM version, as "
                  "official EDM (the modification is ignored, never run; refused by default)"),
        ],
        factory="pspc_network.denoiser:NetworkDenoiser",
    )


@hookimpl
def register_commands(app):
    from .command import convert

    app.command()(convert)
