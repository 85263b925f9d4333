"""Helpers shared by the test layers: where ../shared is, running `pspc` in-process, and the one-line-error check."""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"  # beside the checkout; absent on a user's machine


def pspc(capsys, *args):
    """Run `pspc ARGS` in-process; return (exit code, stdout, stderr)."""
    from pspc_cli.main import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, *fragments):
    """Exit code 2 and exactly one stderr line `error: ...` holding every fragment, no traceback."""
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], err
