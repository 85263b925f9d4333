"""The typer application and the one place where user errors become one-line messages.

Each command lives in its own module under `pspc_cli` (listed in COMMAND_MODULES) and attaches itself to
`app` (or to a sub-app) with a decorator; `main()` imports them and runs the app.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="pspc",
    help="Patch-based empirical denoisers for diffusion models: denoise, sample, compare.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

COMMAND_MODULES = [
    "pspc_cli.cmd_listing",
    "pspc_cli.cmd_dataset",
    "pspc_cli.cmd_denoise",
    "pspc_cli.cmd_sample",
    "pspc_cli.cmd_convert",
    "pspc_cli.cmd_heatmaps",
    "pspc_cli.cmd_compare",
    "pspc_cli.cmd_train",
]


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print `error: message` on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def run_app(args: list[str] | None = None) -> None:
    """Run the app, turning PspcError (and friends) into one line and exit code 2."""
    from pspc_core.errors import PspcError

    from pspc_core import distributed

    try:
        code = app(args=args, prog_name="pspc", standalone_mode=False)  # typer.Exit(n) comes back as n
        if isinstance(code, int) and code:
            sys.exit(code)
        distributed.shutdown()
    except PspcError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            typer.echo("aborted", err=True)
            sys.exit(130)
        raise
