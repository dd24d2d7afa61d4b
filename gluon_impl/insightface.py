"""InsightFace MXNet checkpoints (``PREFIX-symbol.json`` + ``PREFIX-EPOCH.params``) -> gluon model.

Supported graph: InsightFace's ``fmobilefacenet`` (recognition/symbol/fmobilefacenet.py with
symbol_utils.get_fc1(..., 'GDC')), e.g. the published MobileFaceNet "model-y1-test2".
The loader reads the symbol's nodes, derives the configuration (blocks per stage, embedding
size, GDC kernel -> image size, in-graph input normalisation), checks every layer's
attributes against our block (kernel, stride, pad, groups, filters, BN eps and fixed gamma,
PReLU) and loads the parameters *by name*. A graph node we do not have, an array we do not
use, a missing array or a shape mismatch is a ValueError that lists them. From here the
torch model gets the same numbers through ``gluon_impl.transfer.export_params`` ->
``pytorch_impl.transfer.import_params``, the path the harness uses.

``MXNetReference`` runs the checkpoint with MXNet's own ``mx.mod.Module`` (as InsightFace's
eval/verification.py does): the reference our ports are compared with.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from .backbones import build_backbone
from .backbones.layers import PReLU
from .transfer import canonical_params

MXNET_BN_EPS = 1e-3  # mx.sym.BatchNorm's default eps, used where a node gives none
LEAF_SUFFIX = {"conv": "conv2d", "bn": "batchnorm", "prelu": "relu"}
ROLES = {  # canonical leaf -> position among the node's inputs (input 0 is the data)
    "Convolution": {"weight": 1, "bias": 2},
    "BatchNorm": {"weight": 1, "bias": 2, "running_mean": 3, "running_var": 4},
    "LeakyReLU": {"weight": 1},
    "FullyConnected": {"weight": 1, "bias": 2},
}


@dataclass
class Checkpoint:
    """A parsed InsightFace/MXNet checkpoint: symbol nodes by name and the arrays by name."""

    symbol_path: str
    params_path: str
    nodes: list[dict]
    arrays: dict[str, np.ndarray] = field(repr=False)

    def node(self, name: str) -> dict | None:
        return next((n for n in self.nodes if n["name"] == name), None)

    def attrs(self, node: dict) -> dict:
        return node.get("attrs") or node.get("attr") or node.get("param") or {}


def checkpoint_paths(prefix: str, epoch: int = 0) -> tuple[str, str]:
    """InsightFace's file names: ``{prefix}-symbol.json`` and ``{prefix}-{epoch:04d}.params``."""
    return f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params"


def read_checkpoint(prefix: str, epoch: int = 0) -> Checkpoint:
    symbol_path, params_path = checkpoint_paths(prefix, epoch)
    for path in (symbol_path, params_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MXNet checkpoint file not found: {path}")
    try:
        with open(symbol_path) as f:
            nodes = json.load(f)["nodes"]
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{symbol_path}: not an MXNet symbol JSON ({exc})") from exc
    try:
        loaded = mx.nd.load(params_path)
    except mx.MXNetError as exc:
        raise ValueError(f"{params_path}: not an MXNet .params file ({exc})") from exc
    if not isinstance(loaded, dict):
        raise ValueError(f"{params_path}: holds unnamed arrays; expected arg:/aux: names")
    # 'arg:' and 'aux:' prefixes are MXNet's bookkeeping; nodes refer to the bare names
    arrays = {k.split(":", 1)[-1]: v.asnumpy() for k, v in loaded.items()}
    return Checkpoint(symbol_path, params_path, nodes, arrays)


def detect_architecture(ckpt: Checkpoint) -> tuple[str, dict]:
    """(backbone name, build kwargs) for the graph, or ValueError naming what is missing."""
    names = {n["name"] for n in ckpt.nodes}
    required = ["conv_1_conv2d", "conv_6sep_conv2d", "conv_6dw7_7_conv2d", "pre_fc1", "fc1"]
    absent = [r for r in required if r not in names]
    if absent:
        raise ValueError(
            f"{ckpt.symbol_path}: unsupported architecture (no node {', '.join(absent)}); "
            "supported: InsightFace fmobilefacenet with the GDC head ('mobilefacenet')"
        )

    def count(stage: str) -> int:
        found = {int(m.group(1)) for n in names if (m := re.match(rf"{stage}_block(\d+)_", n))}
        return max(found) + 1 if found else 0

    blocks = (1 if "conv_2_dw_conv2d" in names else count("res_2"),
              count("res_3"), count("res_4"), count("res_5"))
    gdc = ckpt.attrs(ckpt.node("conv_6dw7_7_conv2d"))
    kernel = _ints(gdc.get("kernel", "(7, 7)"))
    embedding = int(ckpt.attrs(ckpt.node("pre_fc1"))["num_hidden"])
    kwargs = dict(embedding_size=embedding, image_size=16 * kernel[0], blocks=blocks,
                  input_norm=_has_insightface_input_norm(ckpt))
    return "mobilefacenet", kwargs


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in re.findall(r"-?\d+", text))


def _has_insightface_input_norm(ckpt: Checkpoint) -> bool:
    """True for data -> _minus_scalar(127.5) -> _mul_scalar(0.0078125) at the input."""
    ops = [(n["op"], float(ckpt.attrs(n).get("scalar", "nan"))) for n in ckpt.nodes
           if n["op"] in ("_minus_scalar", "_mul_scalar", "_div_scalar", "_plus_scalar")]
    if not ops:
        return False
    if ops == [("_minus_scalar", 127.5), ("_mul_scalar", 0.0078125)]:
        return True
    raise ValueError(f"{ckpt.symbol_path}: unexpected input scaling {ops}; "
                     "expected (x - 127.5) * 0.0078125 or none")


def mx_node_name(prefix: str) -> str:
    """Our layer path -> fmobilefacenet node name: 'res_3.blocks.0.conv_sep.bn' ->
    'res_3_block0_conv_sep_batchnorm'; 'pre_fc1' and 'fc1' keep their names."""
    parts = prefix.split(".")
    if parts[-1] in LEAF_SUFFIX:
        parts[-1] = LEAF_SUFFIX[parts[-1]]
    return "_".join(parts).replace("_blocks_", "_block")


def _expected_attrs(layer) -> tuple[str, dict]:
    """(MXNet op, attributes as fmobilefacenet writes them) for one of our leaf layers."""
    k = getattr(layer, "_kwargs", {})
    if isinstance(layer, nn.Conv2D):
        return "Convolution", {"kernel": k["kernel"], "stride": k["stride"], "pad": k["pad"],
                               "num_filter": k["num_filter"], "num_group": k["num_group"],
                               "no_bias": k["no_bias"]}
    if isinstance(layer, nn.BatchNorm):
        return "BatchNorm", {"eps": k["eps"], "fix_gamma": k["fix_gamma"]}
    if isinstance(layer, PReLU):
        return "LeakyReLU", {"act_type": "prelu"}
    if isinstance(layer, nn.Dense):
        return "FullyConnected", {"num_hidden": layer._units, "no_bias": layer.bias is None}
    raise ValueError(f"no MXNet op known for {type(layer).__name__}")


def _node_attr(attrs: dict, key: str, expected):
    """Parse a symbol attribute into the type of ``expected``, with MXNet's defaults."""
    defaults = {"stride": "(1, 1)", "pad": "(0, 0)", "num_group": "1", "no_bias": "False",
                "eps": str(MXNET_BN_EPS), "fix_gamma": "True", "act_type": "leaky"}
    text = attrs.get(key, defaults.get(key))
    if isinstance(expected, bool):
        return text in ("True", "true", "1")
    if isinstance(expected, tuple):
        return _ints(text)
    return type(expected)(text)


def _leaf_layers(model) -> dict[str, nn.HybridBlock]:
    """{layer path: leaf block} for every block that owns parameters."""
    out = {}

    def walk(block, path):
        if block._reg_params:
            out[path] = block
        for name, child in block._children.items():
            walk(child, f"{path}.{name}" if path else name)

    walk(model, "")
    return out


def checkpoint_to_canonical(ckpt: Checkpoint, model) -> dict[str, np.ndarray]:
    """Map the checkpoint's arrays onto ``model``'s canonical names; ValueError lists problems."""
    params = canonical_params(model)
    result, used, problems = {}, set(), []
    for path, layer in _leaf_layers(model).items():
        node_name = mx_node_name(path)
        node = ckpt.node(node_name)
        op, expected = _expected_attrs(layer)
        if node is None or node["op"] != op:
            got = "absent" if node is None else node["op"]
            problems.append(f"node {node_name} ({op}) for {path}: {got}")
            continue
        attrs = ckpt.attrs(node)
        for key, want in expected.items():
            got = _node_attr(attrs, key, want)
            same = abs(got - want) <= 1e-9 * abs(want) if isinstance(want, float) else got == want
            if not same:
                problems.append(f"{node_name}.{key} = {got!r}, our {path} has {want!r}")
        for leaf, position in ROLES[op].items():
            key = f"{path}.{leaf}"
            if key not in params:
                continue
            if position >= len(node["inputs"]):
                problems.append(f"{node_name} has no input #{position} for {key}")
                continue
            array_name = ckpt.nodes[node["inputs"][position][0]]["name"]
            if array_name not in ckpt.arrays:
                problems.append(f"array {array_name} (for {key}) missing from the .params")
                continue
            value = ckpt.arrays[array_name]
            if tuple(value.shape) != tuple(params[key].shape):
                problems.append(f"{array_name}: shape {value.shape}, {key} needs "
                                f"{tuple(params[key].shape)}")
            result[key] = value
            used.add(array_name)
    unused = sorted(set(ckpt.arrays) - used)
    if unused:
        problems.append(f"unused arrays {len(unused)}: {', '.join(unused)}")
    if problems:
        raise ValueError(f"{ckpt.params_path} does not fit {type(model).__name__}: "
                         + "; ".join(problems))
    return result


def load_insightface(prefix: str, epoch: int = 0, backbone: str | None = None):
    """Build our gluon backbone for the checkpoint and load its parameters by name.

    Returns (model, backbone name, build kwargs). ``backbone`` (optional) must match the
    detected architecture.
    """
    from .transfer import import_params

    ckpt = read_checkpoint(prefix, epoch)
    name, kwargs = detect_architecture(ckpt)
    if backbone is not None and backbone != name:
        raise ValueError(f"{ckpt.symbol_path} is a {name!r} graph, not {backbone!r}")
    model = build_backbone(name, **kwargs)
    import_params(model, checkpoint_to_canonical(ckpt, model))
    return model, name, kwargs


class MXNetReference:
    """The checkpoint run by MXNet's own ``mx.mod.Module`` (inference), batch by batch.

    ``__call__(x)`` takes float32 N x 3 x H x W in the graph's own input range (raw 0..255
    RGB for InsightFace's MobileFaceNet) and returns the N x D embeddings.
    """

    def __init__(self, prefix: str, epoch: int = 0, batch_size: int = 64):
        symbol_path, _ = checkpoint_paths(prefix, epoch)
        if not os.path.isfile(symbol_path):
            raise FileNotFoundError(f"MXNet checkpoint file not found: {symbol_path}")
        sym, arg_params, aux_params = mx.model.load_checkpoint(prefix, epoch)
        self.sym, self.arg_params, self.aux_params = sym, arg_params, aux_params
        self.batch_size = batch_size
        self.module = None

    def _bind(self, shape):
        self.module = mx.mod.Module(symbol=self.sym, context=mx.cpu(), label_names=None)
        # MXNet 1.9.1's MKLDNN subgraph fusion (on by default at bind) leaves this graph's
        # output in MKLDNN layout for most inputs, and reading it fails ("We can't generate
        # TBlob for MKLDNN data"); without the fusion the same MXNet operators run unfused.
        saved = os.environ.get("MXNET_SUBGRAPH_BACKEND")
        os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
        try:
            self.module.bind(data_shapes=[("data", (self.batch_size,) + tuple(shape))],
                             for_training=False)
        finally:
            if saved is None:
                os.environ.pop("MXNET_SUBGRAPH_BACKEND")
            else:
                os.environ["MXNET_SUBGRAPH_BACKEND"] = saved
        self.module.set_params(self.arg_params, self.aux_params)
        self.shape = tuple(shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.module is None or tuple(x.shape[1:]) != self.shape:
            self._bind(x.shape[1:])
        out = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start:start + self.batch_size]
            padded = np.zeros((self.batch_size,) + self.shape, np.float32)
            padded[:len(chunk)] = chunk  # Module is bound to one batch size: pad the last one
            batch = mx.io.DataBatch(data=(mx.nd.array(padded),))
            self.module.forward(batch, is_train=False)
            out.append(self.module.get_outputs()[0].asnumpy()[:len(chunk)])
        return np.concatenate(out)
