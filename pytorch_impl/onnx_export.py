"""A backbone as ONNX bytes: ``to_onnx(model, image_size, opset) -> (bytes, notes)``.

The Gluon mirror is ``gluon_impl/onnx_export.py`` (same function, MXNet's own exporter).
Both graphs take one input ``data``, float32 N x 3 x H x W with a dynamic batch axis ``N``,
and give one output ``embedding``, N x D (not normalised). Not imported by
``common.backends.load``: only ``bench export`` needs it, and with it the ``onnx`` package.

Exporter: ``torch.onnx.export`` with ``dynamo=False``, the TorchScript-based exporter (opsets
up to 20 in torch 2.13). It is deprecated since torch 2.9 in favour of the ``torch.export``
one, which needs the extra ``onnxscript`` package; for these convolution/BatchNorm/PReLU
backbones the two give the same operators. The model is exported in eval mode
(BatchNorm with its running statistics; a fixed-gamma BatchNorm exports gamma = 1).
"""

from __future__ import annotations

import io
import warnings

import torch

INPUT_NAME, OUTPUT_NAME, BATCH_AXIS = "data", "embedding", "N"
EXPORTER = "torch.onnx.export (TorchScript-based, dynamo=False)"


def to_onnx(model: torch.nn.Module, image_size: int, opset: int = 17) -> tuple[bytes, list[str]]:
    """``model`` (N x 3 x image_size x image_size -> N x D) as a serialised ONNX model, and the
    notes of what had to be changed on the way (none for this exporter)."""
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, 3, image_size, image_size)
        buf = io.BytesIO()
        with warnings.catch_warnings():  # the exporter's own deprecation notice, said above
            warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*feature will be removed.*")
            torch.onnx.export(model, (x,), buf, dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=int(opset),
                              dynamic_axes={INPUT_NAME: {0: BATCH_AXIS},
                                            OUTPUT_NAME: {0: BATCH_AXIS}},
                              do_constant_folding=True)
    finally:
        model.train(was_training)
    return buf.getvalue(), []
