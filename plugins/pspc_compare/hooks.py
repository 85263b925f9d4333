"""Registers the `compare` command. Imports nothing heavy: torch loads when the command runs."""

from pspc_core import hookimpl


@hookimpl
def register_commands(app):
    from .command import compare

    app.command()(compare)
