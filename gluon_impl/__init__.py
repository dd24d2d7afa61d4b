"""MXNet-Gluon backend: the same modules, class names and arguments as ``pytorch_impl``.

Never imports ``pytorch_impl`` (tests/test_layering.py).
"""
