"""The typer application and the one place where every failure a user can cause or meet becomes one line.

`run(args)` runs the app and turns user errors into `error: ...` on stderr with exit code 2: pspc's own errors
(`PspcError`: data, parameters, plugins, checkpoints, busy folders), usage errors (unknown option, bad value:
typer's own exceptions, whether from click or from the copy of click newer typer releases carry), files and
disks (`OSError` and safetensors' own errors: missing, unwritable, full) and memory (numpy's MemoryError, torch's
allocator errors). Ctrl-C is exit 130, also when it lands inside a compiled kernel (which reports it as a
SystemError); SIGTERM stops a run the same way (exit 143), so finished work is kept and locks are released.
Warnings meant for the user (`PspcWarning`) print as `warning: ...`. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import signal
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


OUT_OF_MEMORY = "out of memory; ask for less: a smaller --batch, fewer images or smaller parameters"


_signals: list[int] = []  # SIGTERM received during this run (typer may turn any interrupt into Exit(130))


def _terminate(signum, frame):
    """SIGTERM, raised where the run is as KeyboardInterrupt, so that it unwinds as after Ctrl-C."""
    _signals.append(signum)
    raise KeyboardInterrupt


def _stopped() -> int:
    print("interrupted: finished work is kept; rerun the same command to resume", file=sys.stderr)
    return 143 if _signals else 130


def _from_interrupt(exc: BaseException) -> bool:
    """Whether exc was raised while handling Ctrl-C or SIGTERM (a compiled kernel's SystemError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def run(args: list[str]) -> int:
    """Run the app on `args`; return the exit code (0, 2 for user errors, 130 for Ctrl-C, 143 for SIGTERM, or a
    command's)."""
    clicks = _click_exceptions()
    usage = tuple(m.ClickException for m in clicks)
    warnings.showwarning = _show_warning
    _signals.clear()
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    try:
        return _run(args, usage)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: list[str], usage: tuple) -> int:
    from pspc_core.errors import PspcError, is_out_of_memory
    from pspc_core.runtime import distributed

    try:
        code = app(args=args, prog_name="pspc", standalone_mode=False)  # typer.Exit(n) comes back as n
        if code == 130:  # newer typer turns Ctrl-C into Exit(130) itself
            raise KeyboardInterrupt
        distributed.shutdown()
        return code if isinstance(code, int) else 0
    except PspcError as exc:
        _error(exc)
    except (KeyboardInterrupt, typer.Abort):  # older typer (click) turns Ctrl-C into Abort
        return _stopped()
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
        _error(OUT_OF_MEMORY)
    except (SystemError, RuntimeError) as exc:
        if _from_interrupt(exc):
            return _stopped()
        if not is_out_of_memory(exc):
            raise
        _error(OUT_OF_MEMORY)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _error(f"cannot access{where}: {exc.strerror or exc}; check the path, its permissions and free disk space")
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":  # safetensors' own I/O errors (a full disk) are not OSErrors
            raise
        _error(f"cannot read or write a .safetensors file: {exc}; check the path, its permissions and free disk "
               "space")
    return 2
