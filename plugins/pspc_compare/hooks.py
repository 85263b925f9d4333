"""Registers the `compare` and `calibrate` commands. Imports nothing heavy: torch loads when a command runs."""

from pspc_core import hookimpl


@hookimpl
def register_commands(app):
    from .calibrate_command import calibrate
    from .compare_command import compare

    app.command()(compare)
    app.command()(calibrate)
