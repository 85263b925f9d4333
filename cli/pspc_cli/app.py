"""The typer application and the one place where every failure a user can cause or meet becomes one line.

`run(args)` runs the app and turns user errors into `error: ...` on stderr with exit code 2: pspc's own errors
(`PspcError`: data, parameters, plugins, checkpoints, busy folders), usage errors (unknown option, bad value:
typer's own exceptions, whether from click or from the copy of click newer typer releases carry), files and
disks (`OSError`: missing, unwritable, full) and memory. Ctrl-C is exit 130. Warnings meant for the user
(`PspcWarning`) print as `warning: ...`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import warnings

import typer

app = typer.Typer(
    name="pspc",
    help="Training-free and trained diffusion denoisers: denoise, sample, compare, calibrate.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _click_exceptions():
    """The exception modules of the click typer runs on: `click` (typer < 0.20) and/or `typer._click`."""
    mods = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mods.append(__import__(name, fromlist=["x"]))
        except ImportError:
            pass
    return mods


def _error(message: str) -> None:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    from pspc_core.errors import PspcWarning

    if issubclass(category, PspcWarning):
        print(f"warning: {message}", file=sys.stderr, flush=True)
    else:
        _default_show(message, category, filename, lineno, file, line)


_default_show = warnings.showwarning


def run(args: list[str]) -> int:
    """Run the app on `args`; return the exit code (0, 2 for user errors, 130 for Ctrl-C, or a command's)."""
    from pspc_core.errors import PspcError
    from pspc_core.runtime import distributed

    clicks = _click_exceptions()
    usage = tuple(m.ClickException for m in clicks)
    warnings.showwarning = _show_warning
    try:
        code = app(args=args, prog_name="pspc", standalone_mode=False)  # typer.Exit(n) comes back as n
        if code == 130:  # newer typer turns Ctrl-C into Exit(130) itself
            raise KeyboardInterrupt
        distributed.shutdown()
        return code if isinstance(code, int) else 0
    except PspcError as exc:
        _error(exc)
    except (KeyboardInterrupt, typer.Abort):  # older typer (click) turns Ctrl-C into Abort
        print("interrupted: finished work is kept; rerun the same command to resume", file=sys.stderr)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except usage as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `pspc` or `pspc dataset` alone: the help
            print(exc.format_message())
            return 0
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see `{ctx.command_path} --help`)"
        _error(f"{exc.format_message()}{hint}")
    except MemoryError:
        _error("out of memory; use a smaller --batch (or fewer images)")
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _error(f"cannot access{where}: {exc.strerror or exc}; check the path, its permissions and free disk space")
    return 2
