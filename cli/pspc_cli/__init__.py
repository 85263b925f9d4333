"""The `pspc` command line."""
