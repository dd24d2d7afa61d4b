"""Forward+backward cost of every margin head against plain linear + cross-entropy.

B=256, D=512, C in {1k, 10k, 100k}. Per backend, the baseline is the plain head of that
backend (torch: F.linear + F.cross_entropy; Gluon: FullyConnected + SoftmaxCrossEntropyLoss,
hybridized); beside it our heads (every ``fused_head`` loss of ``list_losses()``), the peers'
ArcFace/CosFace/SphereFace (PML: margins in degrees, W is D x C; gluonfr: fed the cosine
matrix built in the same graph, ArcLoss with easy_margin=False) and the floor of the three
B x D x C GEMMs. Each impl is timed in alternation with the baseline (pairs, so load drift on
the shared machine hits both), and ``ratio`` is the median over the pairs of impl time /
baseline time within a pair: a pair's two runs are adjacent in time, so a burst of load from
another process inflates both, where it would move one median and not the other.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from bench.report.tables import markdown_lines

B, D = 256, 512
CLASSES = (1_000, 10_000, 100_000)
# pairs per case: at C=1k a pair takes ~20 ms and one pair's ratio moves by +-5 % on this shared
# machine, so the median of 61 (a second per case) rather than 15 decides the 1.15x goal there
REPEATS = {1_000: 61, 10_000: 7, 100_000: 5}
SECTION = "heads"


def _margin_heads(list_losses, loss_class) -> list[str]:
    """The losses that declare ``fused_head``: the fused margin head over one C x D weight
    (shared across the timed heads); subcenter_arcface's K C x D weight is a different GEMM
    and does not declare it."""
    return [n for n in list_losses() if loss_class(n).fused_head]


# ---- PyTorch --------------------------------------------------------------------------------

def _torch_impls(num_classes: int) -> tuple[str, dict]:
    import torch
    import torch.nn.functional as F
    from pytorch_metric_learning import losses as pml

    from pytorch_impl.losses import build_loss, list_losses
    from pytorch_impl.losses.base import loss_class

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=gen).requires_grad_(True)
    y = torch.randint(0, num_classes, (B,), generator=gen)
    weight = torch.nn.Parameter(torch.randn(num_classes, D, generator=gen) * 0.01)

    def run(module, params):
        def call():
            x.grad = None
            for p in params:
                p.grad = None
            module(x, y).backward()
        return call

    def plain(_x, _y):
        return F.cross_entropy(F.linear(_x, weight), _y)

    def floor():
        with torch.no_grad():
            logits = x @ weight.t()
            logits @ weight
            logits.t() @ x

    impls = {"torch linear+CE": run(plain, [weight])}
    for name in _margin_heads(list_losses, loss_class):
        loss = build_loss(name, num_classes=num_classes, embedding_size=D)
        loss.weight = weight  # share the C x D weights: one copy in memory for all heads
        impls[f"torch {name}"] = run(loss, [weight])
    peers = {"PML ArcFaceLoss": pml.ArcFaceLoss(num_classes, D, margin=math.degrees(0.5),
                                                scale=64),
             "PML CosFaceLoss": pml.CosFaceLoss(num_classes, D, margin=0.35, scale=64),
             "PML SphereFaceLoss": pml.SphereFaceLoss(num_classes, D, margin=4, scale=1)}
    for label, peer in peers.items():
        impls[label] = (lambda p=peer: run(p, [p.W]))  # built lazily: each holds a D x C copy
    impls["torch GEMM floor"] = floor
    return "torch linear+CE", impls


# ---- Gluon ----------------------------------------------------------------------------------

def _gluon_impls(num_classes: int) -> tuple[str, dict]:
    import mxnet as mx
    from gluonfr import loss as gfr
    from mxnet import autograd, gluon, nd

    from gluon_impl.losses import build_loss, list_losses
    from gluon_impl.losses.base import loss_class

    rng = np.random.default_rng(0)
    x = nd.array(rng.standard_normal((B, D), dtype=np.float32))
    x.attach_grad()
    y = nd.array(rng.integers(0, num_classes, B), dtype="float32")
    w_init = nd.array(rng.standard_normal((num_classes, D), dtype=np.float32) * 0.01)

    class Plain(gluon.HybridBlock):
        def __init__(self, cosine_peer=None):
            super().__init__()
            self.peer = cosine_peer
            self.ce = gluon.loss.SoftmaxCrossEntropyLoss()
            self.weight = self.params.get("weight", shape=(num_classes, D))

        def hybrid_forward(self, F, data, label, weight):
            if self.peer is None:
                logits = F.FullyConnected(data, weight, no_bias=True, num_hidden=num_classes)
                return F.mean(self.ce(logits, label))
            # gluonfr's margin losses take the cosine matrix: normalise both sides here
            cos = F.FullyConnected(F.L2Normalization(data), F.L2Normalization(weight),
                                   no_bias=True, num_hidden=num_classes)
            return F.mean(self.peer(cos, label))

    def ready(block):
        block.initialize()
        block.weight.set_data(w_init)
        block.hybridize(static_alloc=True)
        return block

    def run(block):
        def call():
            with autograd.record():
                value = block(x, y)
            value.backward()
            x.grad.wait_to_read()
            block.weight.grad().wait_to_read()
        return call

    def floor():
        logits = nd.dot(x, w_init, transpose_b=True)
        nd.dot(logits, w_init).wait_to_read()
        nd.dot(logits, x, transpose_a=True).wait_to_read()

    impls = {"gluon Dense+SoftmaxCE": run(ready(Plain()))}
    for name in _margin_heads(list_losses, loss_class):
        impls[f"gluon {name}"] = (lambda n=name: run(ready(
            build_loss(n, num_classes=num_classes, embedding_size=D))))
    peers = {"gluonfr ArcLoss": lambda: gfr.ArcLoss(num_classes, m=0.5, s=64,
                                                   easy_margin=False),
             "gluonfr CosLoss": lambda: gfr.CosLoss(num_classes, m=0.35, s=64),
             "gluonfr ASoftmax": lambda: gfr.ASoftmax(num_classes, m=4, s=1)}
    for label, make in peers.items():
        impls[label] = (lambda m=make: run(ready(Plain(m()))))
    impls["gluon GEMM floor"] = floor
    _ = mx
    return "gluon Dense+SoftmaxCE", impls


# ---- timing ---------------------------------------------------------------------------------

def _paired(baseline, fn, repeats: int) -> tuple[list[float], list[float]]:
    """Alternate baseline and fn; returns (baseline times, fn times)."""
    baseline()
    fn()
    tb, tf = [], []
    for i in range(repeats):
        for f, out in ((baseline, tb), (fn, tf)) if i % 2 == 0 else ((fn, tf), (baseline, tb)):
            t0 = time.perf_counter()
            f()
            out.append(time.perf_counter() - t0)
    return tb, tf


def _row(backend, num_classes, impl, baseline, times, ratio, note=""):
    return {"section": SECTION, "case": f"{backend} C={num_classes}", "impl": impl,
            "baseline": baseline, "repeats": len(times), "median_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times), "ratio": ratio, "note": note}


def measure(quick: bool = False) -> list[dict]:
    """Rows of (backend, C, impl) with paired ratios to the backend's plain head."""
    import torch

    rows = []
    classes = (1_000,) if quick else CLASSES
    for backend, make in (("torch", _torch_impls), ("gluon", _gluon_impls)):
        for num_classes in classes:
            repeats = 3 if quick else REPEATS[num_classes]
            base_name, impls = make(num_classes)
            baseline = impls.pop(base_name)
            all_base = []
            for impl, fn in impls.items():
                if not callable(fn) or fn.__name__ == "<lambda>":
                    fn = fn()
                tb, tf = _paired(baseline, fn, repeats)
                all_base += tb
                ratio = statistics.median(f / b for f, b in zip(tf, tb))
                rows.append(_row(backend, num_classes, impl, base_name, tf, ratio,
                                 f"paired baseline median {statistics.median(tb) * 1e3:.1f} ms"))
                del fn
            rows.append(_row(backend, num_classes, base_name, base_name, all_base, 1.0,
                             f"threads={torch.get_num_threads()}"))
    return rows


def _markdown(rows: list[dict], command: str) -> str:
    lines = [f"Command: `{command}`", ""]
    lines += markdown_lines(
        ["case", "impl", "median ms", "min ms", "max ms", "ratio to plain head"],
        ([r["case"], r["impl"], f"{r['median_s'] * 1e3:.1f}", f"{r['min_s'] * 1e3:.1f}",
          f"{r['max_s'] * 1e3:.1f}", f"{r['ratio']:.3f}"] for r in rows), align="--rrrr")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.perf.sections.heads [--quick] [--out FILE.md]``: measure, print a table."""
    import argparse
    import json
    import os
    import sys

    parser = argparse.ArgumentParser(prog="python -m bench.perf.sections.heads")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", help="write the markdown table (and rows as .json) here")
    args = parser.parse_args(argv)
    from bench.runtime import configure_threads

    threads = configure_threads()
    rows = measure(quick=args.quick)
    command = (f"OMP_NUM_THREADS={threads} python -m bench.perf.sections.heads "
               + " ".join(sys.argv[1:] if argv is None else argv))
    text = _markdown(rows, command.strip())
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
        with open(os.path.splitext(args.out)[0] + "_rows.json", "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
