"""Subcommands of `hub`, one module per concern, each adding itself to the `main` group."""
