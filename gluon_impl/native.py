"""The margin cross-entropy's row-pass operators (``gluon_impl/csrc/fused_margin_ce.cc``).

Built with the system C++ compiler on first use (``common.native``: a cache folder keyed by a
hash of the source, the build flags, the MXNet version and the CPU), then loaded with
``mx.library.load``; it registers, NDArray and Symbol, so hybridized blocks use them too:
``F.margin_lse_rows`` (the non-target logsumexp and the target logit of a logits matrix, with a
one-pass backward), ``F.l2norm_rows`` (W/|W| by rows, times an optional scale, with a one-pass
backward), ``F.curricular_lse_rows`` (``margin_lse_rows`` with CurricularFace's hard-negative
rule) and ``F.norm_rows`` (|x| by rows). The GEMMs stay in the graph's FullyConnected (MXNet's
oneDNN kernels). Measured (B=256, D=512, one thread, paired with Dense+SoftmaxCE):
arcface/cosface 1.03-1.05x at C=10k and 0.95-0.97x at C=100k, where the pure-Gluon graph takes
1.34-1.41x. On by default where MXNet sees no GPU; ``FACELOSSES_FUSED=0`` turns it off,
``FACELOSSES_FUSED=1`` on (for losses on CPU contexts) where MXNet sees a GPU. ``available()``
is False when it is off, or, with a warning that says why, when there is no compiler or the
build or the load fails; callers then use the pure-Gluon graph
(``ops.margin_cross_entropy_graph``), the same maths (tests/losses/test_gluon_fused.py).
Cache folder
and compiler: see ``common.native``.
"""

from __future__ import annotations

import os
from pathlib import Path

from common import native

SOURCE = Path(__file__).resolve().parent / "csrc" / "fused_margin_ce.cc"
OPS = ("margin_lse_rows", "l2norm_rows", "curricular_lse_rows", "norm_rows")


def _load() -> bool:
    import mxnet as mx

    if os.environ.get("FACELOSSES_FUSED", "") != "1" and mx.context.num_gpus() > 0:
        # the operators have CPU kernels only: where MXNet sees a GPU, the loss would most
        # likely run there, so the default is the pure-Gluon graph
        raise RuntimeError("off by default where MXNet sees a GPU (CPU-only operators); "
                           "FACELOSSES_FUSED=1 turns it on for losses on CPU contexts")
    if all(hasattr(mx.nd, op) for op in OPS):  # loaded already: MXNet refuses a second one
        return True
    mx_dir = Path(mx.__file__).resolve().parent
    lib = native.build(SOURCE, (mx.__version__.encode(), str(mx_dir).encode()))
    mx.library.load(str(lib), verbose=False)
    missing = [op for op in OPS if not (hasattr(mx.nd, op) and hasattr(mx.sym, op))]
    if missing:
        raise RuntimeError(f"{lib} loaded but registered no {', '.join(missing)}")
    return True


# off by default where MXNet sees a GPU: a setting, not a fault, so no warning then
OPERATORS = native.LoadOnce(_load, "fused margin cross-entropy", "the pure-Gluon head",
                            quiet=lambda reason: "GPU" in reason)


def available() -> bool:
    """True once the operators are registered (built and loaded on the first call)."""
    return OPERATORS.get() is not None


def unavailable_reason() -> str:
    """Why ``available()`` is False ('' when it is True or was not asked yet)."""
    return OPERATORS.reason
