"""Registers the `train` command. Imports nothing heavy: torch loads when the command runs."""

from pspc_core import hookimpl


@hookimpl
def register_commands(app):
    from .command import train

    app.command()(train)
