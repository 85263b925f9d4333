"""The plugin author's manual: the one hook a pspc plugin implements.

A plugin is a module (or object) registered under the entry-point group ``pspc``::

    # pyproject.toml of your distribution
    [project.entry-points.pspc]
    mydenoisers = "my_package.hooks"

and that module implements ``register_denoisers``::

    from pspc_core import hookimpl, Param

    @hookimpl
    def register_denoisers(register):
        register(
            "blur",
            summary="Gaussian blur of the noisy latent (a toy baseline)",
            params=[Param("width", "float", 1.0, "blur standard deviation in pixels")],
            factory="my_package.blur:BlurDenoiser",   # imported only when the denoiser is created
        )

The factory (a ``"module:attr"`` string, or a callable) is called with the declared parameters as keyword
arguments, already converted to their types, and returns a denoiser: a callable ``den(z, t) -> x_hat`` on torch
tensors (z [B, C, R, R] float32, t [B]) with ``.to(device)``. Keep the hook module free of heavy imports so
that listing denoisers and ``pspc --help`` stay fast.
"""

import pluggy

PROJECT = "pspc"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_denoisers(register):
    """Declare denoisers by calling ``register(name, *, summary, params, factory)`` once per denoiser.

    ``params`` is a list of :class:`pspc_core.Param`; a parameter named ``dataset`` (type ``dataset``) receives a
    :class:`pspc_core.Dataset`, whatever the user passed (object, path or built-in name).
    """
