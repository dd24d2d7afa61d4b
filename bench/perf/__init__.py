"""Benchmark sections for ``python -m bench perf``, one module each (docs/ARCHITECTURE.md)."""
