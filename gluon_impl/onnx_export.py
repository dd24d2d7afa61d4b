"""A backbone as ONNX bytes through MXNet's own exporter; mirror of ``pytorch_impl/onnx_export.py``.

``to_onnx(model, image_size, opset) -> (bytes, notes)`` exports our Gluon backbone (its
hybridised symbol and parameters); ``checkpoint_to_onnx(prefix, epoch, image_size, opset)`` an
InsightFace MXNet checkpoint as published (``PREFIX-symbol.json`` + ``PREFIX-EPOCH.params``).
Both graphs take one input ``data``, float32 N x 3 x H x W with a dynamic batch axis ``N``,
and give one output ``embedding``, N x D. Not imported by ``common.backends.load``.

The converter is MXNet 1.9.1's ``mx.onnx`` (``MXNetGraph.create_onnx_graph_proto``, the
function ``mx.onnx.export_model`` wraps; called directly because ``export_model`` always
declares the newest opset of the installed ``onnx`` and has no argument for it). It imports
``onnx.mapping``, which onnx 1.19 removed: onnx 1.18 is the newest it runs with. What it gets
wrong, and what ``symbol_to_onnx`` does about it (each returned as a note when it applied):

- A ``FullyConnected`` without a ``flatten`` attribute (symbols saved by MXNet 1.0, such as
  InsightFace's MobileFaceNet y1) is converted as ``flatten=False``, although MXNet's default
  is True: the ONNX model then fails to load ("Dimension mismatch ... 512 and 1"). The default
  is written into the symbol before converting.
- ``LeakyReLU(act_type='prelu')`` becomes ONNX ``PRelu`` with the per-channel slope of shape
  (C,), which ONNX broadcasts against the *last* axis (W), not the channels: onnxruntime
  refuses it ("broadcast ... 56 by 64"), or, where W == C, computes something else. Such a
  slope is reshaped to (C, 1, 1) (the fix InsightFace's own ONNX helper applies).
- A fixed-gamma ``BatchNorm`` (``fix_gamma=True``, MXNet's default: InsightFace's embedding
  BN ``fc1``) is treated by MXNet as gamma = 1 whatever its stored value; the converter uses
  the stored value. The gamma is set to 1 in the exported copy.
- The parameters come out as graph inputs as well as initializers; they are removed from the
  inputs (so the model has exactly one input), and the batch axis gets the name ``N``.
"""

from __future__ import annotations

import json
import warnings

import mxnet as mx
import numpy as np

INPUT_NAME, OUTPUT_NAME, BATCH_AXIS = "data", "embedding", "N"
EXPORTER = "mx.onnx (MXNetGraph.create_onnx_graph_proto, the converter of mx.onnx.export_model)"


def to_onnx(model, image_size: int, opset: int = 17) -> tuple[bytes, list[str]]:
    """Our Gluon ``model`` (N x 3 x image_size x image_size -> N x D) as a serialised ONNX
    model, and the notes of what had to be fixed on the way."""
    sym = model(mx.sym.var(INPUT_NAME))
    params = {p.name: p.data() for p in model.collect_params().values()}
    return symbol_to_onnx(sym, params, image_size, opset)


def checkpoint_to_onnx(prefix: str, epoch: int, image_size: int,
                       opset: int = 17) -> tuple[bytes, list[str]]:
    """An MXNet checkpoint (``PREFIX-symbol.json`` + ``PREFIX-EPOCH.params``) as ONNX."""
    sym, arg_params, aux_params = mx.model.load_checkpoint(prefix, epoch)
    return symbol_to_onnx(sym, {**arg_params, **aux_params}, image_size, opset)


def _true(value) -> bool:
    return str(value).strip().lower() in ("true", "1")


def symbol_to_onnx(sym, params: dict, image_size: int, opset: int = 17) -> tuple[bytes, list[str]]:
    """Symbol (input ``data``) + ``{name: NDArray}`` -> (ONNX bytes, notes); the caller's
    symbol and arrays are not changed."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    from onnx import TensorProto, helper

    notes = []
    graph = json.loads(sym.tojson())
    nodes = graph["nodes"]
    flatten = 0
    for node in nodes:
        attrs = node.setdefault("attrs", {})
        if node["op"] == "FullyConnected" and "flatten" not in attrs:
            attrs["flatten"] = "True"
            flatten += 1
    if flatten:
        notes.append(f"{flatten} FullyConnected without a 'flatten' attribute: MXNet's default "
                     "flatten=True written out (the converter reads a missing one as False)")
    params = dict(params)
    gammas = 0
    for node in nodes:
        if node["op"] == "BatchNorm" and _true(node["attrs"].get("fix_gamma", "True")):
            gamma = nodes[node["inputs"][1][0]]["name"]
            if gamma in params and not np.all(params[gamma].asnumpy() == 1):
                params[gamma] = mx.nd.ones_like(params[gamma])
                gammas += 1
    if gammas:
        notes.append(f"{gammas} fixed-gamma BatchNorm(s) with a stored gamma other than 1: set "
                     "to 1 (MXNet ignores it, the converter does not)")
    shape = (3, int(image_size), int(image_size))
    with warnings.catch_warnings():  # the converter's use of onnx.mapping, said above
        warnings.filterwarnings("ignore", message=".*mapping.*deprecated.*",
                                category=DeprecationWarning)
        proto = MXNetGraph().create_onnx_graph_proto(
            mx.sym.load_json(json.dumps(graph)), params, [(1,) + shape], [TensorProto.FLOAT],
            opset_version=int(opset), dynamic=True, dynamic_input_shapes=[(None,) + shape])
    opsets = [helper.make_opsetid("", int(opset))]
    model = helper.make_model(proto, opset_imports=opsets, producer_name="mxnet",
                              producer_version=mx.__version__)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    notes += _finish(model)
    return model.SerializeToString(), notes


def _finish(model) -> list[str]:
    """Initializers out of the graph inputs, per-channel PRelu slopes, the names; notes."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    del graph.input[:]
    graph.input.extend(inputs)
    notes = []
    ranks = {v.name: len(v.type.tensor_type.shape.dim)
             for v in [*onnx.shape_inference.infer_shapes(model).graph.value_info, *inputs]
             if v.type.tensor_type.HasField("shape")}
    reshaped = set()
    for node in graph.node:
        if node.op_type != "PRelu" or node.input[1] not in inits or node.input[1] in reshaped:
            continue
        slope = numpy_helper.to_array(inits[node.input[1]])
        rank = ranks.get(node.input[0], 0)
        if slope.ndim == 1 and slope.size > 1 and rank > 2:
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(
                slope.reshape((-1,) + (1,) * (rank - 2)), node.input[1]))
            reshaped.add(node.input[1])
    if reshaped:
        notes.append(f"{len(reshaped)} PRelu slope(s) of shape (C,) reshaped to (C, 1, 1): ONNX "
                     "broadcasts (C,) against the last axis, MXNet's prelu is per channel")
    if len(graph.output) == 1:
        old = graph.output[0].name
        for node in graph.node:
            for field in (node.input, node.output):
                for i, name in enumerate(field):
                    if name == old:
                        field[i] = OUTPUT_NAME
        graph.output[0].name = OUTPUT_NAME
    for value in (*graph.input[:1], *graph.output[:1]):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_AXIS
    return notes
