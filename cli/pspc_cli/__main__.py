"""`python -m pspc_cli` runs the command line."""

from .main import main

main()
