"""Sub-commands of ``python -m bench``; each module here is one command (see bench/cli.py)."""
