"""PyTorch backend: losses, backbones, data adapter and training loop.

Mirrors ``gluon_impl`` module for module; never imports it (tests/test_layering.py).
"""
