"""Framework-free layer: RecordIO and .bin formats, face dataset, converters,
synthetic data, shared sampler and verification metrics.

Nothing in this package may import torch or mxnet (tests/test_layering.py checks).
"""
