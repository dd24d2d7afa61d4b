"""Comparison harness and command-line interface (``python -m bench --help``)."""
