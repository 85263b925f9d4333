"""Running the `pspc` command line in-process from tests."""

from pspc_cli.main import main


def pspc(capsys, *args):
    """Run `pspc ARGS` in-process; return (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
