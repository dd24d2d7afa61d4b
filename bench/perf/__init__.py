"""Benchmark sections for ``python -m bench perf``; one module per section (see docs/ARCHITECTURE.md)."""
