"""``python -m bench perf``: the report writer and timing helpers; the sections in ``sections/``."""
