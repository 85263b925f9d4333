"""Console entry point: import every command module (they attach to the app), then run it."""

from __future__ import annotations

import importlib

from .app import COMMAND_MODULES, app, run_app


def load_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a command module that exists but fails is a bug worth seeing
                raise


def main(args: list[str] | None = None) -> None:
    load_commands()
    run_app(args)


load_commands()  # so that `from pspc_cli.main import app` gives the complete app (tests, completion)
__all__ = ["app", "main"]
