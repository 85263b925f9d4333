"""Console entry point: load the plugins' commands onto the app, then run it."""

from __future__ import annotations

import os
import re
import sys

from .app import app, run

_LONG = re.compile(r"--([A-Za-z][A-Za-z0-9_-]*)(=.*)?$", re.S)


def normalise_argv(args: list[str]) -> list[str]:
    """The paper's spellings as the declared ones: `--n_steps` -> `--n-steps`, `--P_mean` -> `--p-mean`
    (long option names only, never values, nothing after `--`)."""
    out = []
    for i, a in enumerate(args):
        if a == "--":
            return out + args[i:]
        m = _LONG.match(a)
        out.append(f"--{m.group(1).replace('_', '-').lower()}{m.group(2) or ''}" if m else a)
    return out


_loaded = False


def load_commands() -> None:
    """The built-in commands (shell) and every plugin's (`register_commands`), once; plugin notices printed."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from pspc_core.plugins import plugin_manager

    from . import cmd_dataset, cmd_denoise, cmd_listing, cmd_sample  # noqa: F401  (they attach to `app`)

    plugin_manager().add_commands(app)


def main(args: list[str] | None = None) -> None:
    load_commands()
    from pspc_core.plugins import plugin_manager

    for notice in plugin_manager().take_notices():
        print(f"warning: {notice}", file=sys.stderr)
    try:
        code = run(normalise_argv(sys.argv[1:] if args is None else list(args)))
    except BrokenPipeError:  # `pspc ... | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail
        code = 0
    if args is None:  # the console command itself, not a call from Python
        from pspc_core.runtime.distributed import exit_worker

        exit_worker(code or 0)
    if code:
        sys.exit(code)


load_commands()  # so that `from pspc_cli.main import app` gives the complete app (tests, completion)
__all__ = ["app", "main"]
