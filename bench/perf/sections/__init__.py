"""Benchmark sections for ``python -m bench perf``, one module each exposing ``measure(quick)``."""
