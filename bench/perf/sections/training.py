"""Training throughput of each backbone in each backend (images/s of a full SGD step).

A step is backbone forward + softmax head + backward + SGD update on a random batch at 112 px.
Baseline per (backbone, batch): PyTorch in its default NCHW layout; beside it PyTorch
channels_last, Gluon hybridize(static_alloc=True) (what the harness uses) and Gluon
hybridize(static_alloc=True, static_shape=True). The ratio column is time per step over the
baseline's, so torch/gluon speed is read directly from the gluon rows (ratio > 1: gluon slower).

Each variant is timed in a fresh interpreter: MXNet's static_alloc memory pools are never given
back within a process, and keeping every model's pools alive ran a full report out of memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from bench.perf.timing import add_ratios

NUM_CLASSES = 1000
EMBEDDING = 512
VARIANTS = {
    "torch": ("_torch_step", {"channels_last": False}),
    "torch channels_last": ("_torch_step", {"channels_last": True}),
    "gluon static_alloc": ("_gluon_step", {"static_shape": False}),
    "gluon static_alloc+static_shape": ("_gluon_step", {"static_shape": True}),
}
ALL_VARIANTS = tuple(VARIANTS)
PLAIN = ("torch", "gluon static_alloc")
# (backbone, batch sizes, repeats, variants). The IResNets take 5-60 s per step on 2 cores
# (IResNet-100 at b64: about 100 s), so they run one timed step after one warm-up, in the two
# layouts the harness uses; the layout variants are compared where a step is cheap enough to
# repeat (IResNet-18 at b64 and the smaller backbones).
CASES = [("smallcnn", (64, 128), 5, ALL_VARIANTS), ("mobilefacenet", (64, 128), 3, ALL_VARIANTS),
         ("iresnet18", (64,), 2, ALL_VARIANTS), ("iresnet18", (128,), 1, PLAIN),
         ("iresnet34", (64, 128), 1, PLAIN), ("iresnet50", (64, 128), 1, PLAIN),
         ("iresnet100", (64, 128), 1, PLAIN)]
QUICK_CASES = [("smallcnn", (16,), 2, ALL_VARIANTS)]


def _torch_step(name: str, batch: int, size: int, channels_last: bool):
    import torch

    from pytorch_impl.backbones import build_backbone
    from pytorch_impl.losses import build_loss

    torch.manual_seed(0)
    model = build_backbone(name, embedding_size=EMBEDDING, image_size=size)
    head = build_loss("softmax", num_classes=NUM_CLASSES, embedding_size=EMBEDDING)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, NUM_CLASSES, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.01,
                          momentum=0.9, weight_decay=5e-4)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        head(model(x), y).backward()
        opt.step()

    return step


def _gluon_step(name: str, batch: int, size: int, static_shape: bool):
    import mxnet as mx
    from mxnet import autograd, gluon

    from gluon_impl.backbones import build_backbone
    from gluon_impl.losses import build_loss

    mx.random.seed(0)
    model = build_backbone(name, embedding_size=EMBEDDING, image_size=size)
    head = build_loss("softmax", num_classes=NUM_CLASSES, embedding_size=EMBEDDING)
    model.hybridize(static_alloc=True, static_shape=static_shape)
    head.hybridize(static_alloc=True, static_shape=static_shape)
    rng = np.random.default_rng(0)
    x = mx.nd.array(rng.standard_normal((batch, 3, size, size), dtype=np.float32))
    y = mx.nd.array(rng.integers(0, NUM_CLASSES, batch), dtype="int64")
    params = model.collect_params()
    params.update(head.collect_params())
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 0.01, "momentum": 0.9, "wd": 5e-4})

    def step():
        with autograd.record():
            loss = head(model(x), y)
        loss.backward()
        trainer.step(1)
        loss.wait_to_read()

    return step



def _time_in_subprocess(impl: str, name: str, batch: int, size: int, repeats: int) -> dict:
    fn, kwargs = VARIANTS[impl]
    code = (
        "import json, sys\n"
        "from bench.runtime import configure_threads\n"
        "configure_threads()\n"
        "from bench.perf.sections import training as t\n"
        "from bench.perf.timing import time_call\n"
        f"step = t.{fn}({name!r}, {batch}, {size}, **{kwargs!r})\n"
        f"print('TIMING ' + json.dumps(time_call(step, repeats={repeats}, warmup=1)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ), check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("TIMING ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"training perf {impl} {name} b{batch}: exit {out.returncode}: "
                           f"{out.stderr.strip()[-500:]}")
    return json.loads(lines[-1][len("TIMING "):])


def measure(quick: bool = False, cases: list[str] | None = None) -> list[dict]:
    """``cases``: substrings of case names ("iresnet50 b128") to measure; None for all."""
    size = 32 if quick else 112
    rows = []
    for name, batches, repeats, variants in QUICK_CASES if quick else CASES:
        for batch in batches:
            case = f"{name} b{batch} {size}px"
            if cases and not any(c in case for c in cases):
                continue
            for impl in variants:
                try:
                    timing = _time_in_subprocess(impl, name, batch, size, repeats)
                except RuntimeError as exc:
                    if impl == "torch":  # the baseline: without it the case has no ratios
                        raise
                    # one variant killed (the OOM killer: exit -9) keeps the other rows
                    rows.append({"section": "training", "case": case, "impl": impl,
                                 "baseline": "torch", "note": f"not measured: {exc}"[:300]})
                    continue
                rows.append({"section": "training", "case": case, "impl": impl,
                             "baseline": "torch", **timing,
                             "note": f"{batch / timing['median_s']:.3g} img/s"})
    return add_ratios(rows)
