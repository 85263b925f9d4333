"""Registers the `heatmaps` command. Imports nothing heavy: torch loads when the command runs."""

from pspc_core import hookimpl


@hookimpl
def register_commands(app):
    from .command import heatmaps

    app.command()(heatmaps)
