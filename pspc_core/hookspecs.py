"""The plugin author's manual: the two hooks a pspc plugin may implement.

A plugin is a module (or object) registered under the entry-point group ``pspc``::

    # pyproject.toml of your distribution
    [project.entry-points.pspc]
    mydenoisers = "my_package.hooks"

and that module implements ``register_denoisers`` (a denoiser), ``register_commands`` (a command), or both::

    from pspc_core import hookimpl, Param

    @hookimpl
    def register_denoisers(register):
        register(
            "blur",
            summary="Gaussian blur of the noisy latent (a toy baseline)",
            params=[Param("width", "float", 1.0, "blur standard deviation in pixels")],
            factory="my_package.blur:BlurDenoiser",   # imported only when the denoiser is created
        )

    @hookimpl
    def register_commands(app):
        @app.command()
        def hello(name: str = "world"):
            '''Say hello.'''
            print(f"hello {name}")

The factory (a ``"module:attr"`` string, or a callable) is called with the declared parameters as keyword
arguments, already converted to their types, and returns a denoiser: a callable ``den(z, t) -> x_hat`` on torch
tensors (z [B, C, R, R] float32, t [B]) with ``.to(device)``; subclass :class:`pspc_core.Denoiser` to have its
inputs checked. Declare each parameter once, with the factory's own name and default (``pspc_core.params.
signature_mismatches`` lists any drift; the project's tests run it on every registered denoiser).

Hook modules are imported whenever ``pspc`` starts (to list denoisers and to build ``--help``): keep them free of
heavy imports (torch, numpy) and import inside command bodies instead. A command gets the run options every
command shares (``--data``, ``-d``, ``--device``, the noise grid, ...) from ``pspc_cli.options``; raise
``pspc_core.errors.PspcError`` subclasses for anything a user can get wrong, and the command line prints one line.
"""

import pluggy

PROJECT = "pspc"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_denoisers(register):
    """Declare denoisers by calling ``register(name, *, summary, params, factory, scale=None)`` once per denoiser.

    ``params`` is a list of :class:`pspc_core.Param`; a parameter of type ``dataset`` receives a
    :class:`pspc_core.Dataset`, whatever the user passed (object, path or built-in name). A parameter whose
    default depends on the run's data names a ``data_default`` function (see :class:`pspc_core.Param`).
    ``scale`` (a :class:`pspc_core.Scale`) names the parameter that sets the denoiser's locality scale per noise
    level and its candidate values, for ``pspc calibrate``.
    """


@hookspec
def register_commands(app):
    """Add commands to the ``pspc`` command line: ``app`` is its ``typer.Typer``; decorate functions with
    ``@app.command()`` (or ``app.add_typer`` a group)."""
