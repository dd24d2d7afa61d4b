"""Perf section ``scaling``: 1 vs 2 processes, head memory per rank, head time vs classes.

Three measurements, all on this machine (CPU, gloo):

1. ``throughput``: training steps per second of smallcnn + ArcFace (global batch 64, 48 px) in
   one process with 1 thread (baseline) and 2 threads, and 2 ranks x 1 thread
   (``DistributedTrainer``: DDP backbone + PartialFC head), each in a freshly spawned process
   group; steps start together (barrier) and the median step time is reported. A second case
   uses 100k classes, where the head dominates and the model-parallel split pays. The
   baseline is 1 process x 1 thread (the same core count per process as each rank): on a
   shared, oversubscribed machine 2 OpenMP threads can be far slower than 1 (spinning
   barriers), so the 2-thread row is reported beside it, with the load average.
2. ``head memory``: peak resident memory added by one training step of a PartialFC shard
   (weights, gradient, momentum, logits) for several shard sizes C_k, D=512, global batch 128:
   the kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs) minus the resident
   size before. A least-squares line gives the bytes per class, from which the head memory of
   2M classes on 8 GPUs (250k classes per rank, fp32 and SGD with momentum) is projected.
3. ``head time``: forward + backward of the single-process head for 1k..100k classes; for 1M
   classes, where the full head does not fit the shared machine, one rank's shard of 8 ranks
   (125k classes), exact and with negative-class sampling r=0.1.

Run alone and write the record::

    OMP_NUM_THREADS=2 python -m bench.perf.sections.scaling --out results/scale_out/scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.perf.timing import time_runs
from bench.report.tables import markdown_lines

SECTION = "scaling"
D = 512


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- 1. throughput, 1 vs 2 processes ----------------------------------------------------------

def _throughput_worker(rank, world, port, threads, num_classes, steps, warmup, out):
    import torch

    torch.set_num_threads(threads)
    import torch.distributed as dist

    from pytorch_impl.backbones import build_backbone
    from pytorch_impl.losses import build_loss

    batch, size = 64, 48
    torch.manual_seed(0)
    net = build_backbone("smallcnn", embedding_size=D, image_size=size)
    loss = build_loss("arcface", num_classes=num_classes, embedding_size=D)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch, 3, size, size)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=batch)
    if world == 1:
        from pytorch_impl.train import Trainer

        trainer, lo, hi = Trainer(net, loss), 0, batch
    else:
        from pytorch_impl.distributed import init_process_group, shard_bounds
        from pytorch_impl.distributed_train import DistributedTrainer

        ctx = init_process_group(rank, world, init_method=f"tcp://127.0.0.1:{port}",
                                 backend="gloo")
        trainer = DistributedTrainer(net, loss, ctx)
        lo, hi = shard_bounds(batch, world, rank)
    trainer.set_lr(0.01)
    times = []
    for step in range(warmup + steps):
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        trainer.train_step(images[lo:hi], labels[lo:hi])
        if world > 1:
            dist.barrier()  # the step ends when the slowest rank ends
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    if rank == 0:
        Path(out).write_text(json.dumps({"times": times, "batch": batch,
                                         "load": round(os.getloadavg()[0], 2)}))
    if world > 1:
        dist.destroy_process_group()


def _throughput(quick: bool) -> list[dict]:
    import torch.multiprocessing as mp

    steps, warmup = (4, 2) if quick else (12, 3)
    rows = []
    for num_classes in ((100,) if quick else (100, 100_000)):
        case = f"smallcnn+arcface train step, B=64, 48 px, C={num_classes}"
        runs = {}
        for impl, world, threads in (("1 process x 1 thread", 1, 1),
                                     ("1 process x 2 threads", 1, 2),
                                     ("2 processes x 1 thread (DDP + PartialFC, gloo)", 2, 1)):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "t.json"
                mp.spawn(_throughput_worker, nprocs=world, join=True,
                         args=(world, _free_port(), threads, num_classes, steps, warmup,
                               str(out)))
                runs[impl] = json.loads(out.read_text())
        base = statistics.median(runs["1 process x 1 thread"]["times"])
        for impl, r in runs.items():
            ts = r["times"]
            rows.append({"section": SECTION, "case": case, "impl": impl,
                         "baseline": "1 process x 1 thread", "repeats": len(ts),
                         "load_avg_1min": r["load"],
                         "median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts),
                         "ratio": statistics.median(ts) / base,
                         "img_per_s": r["batch"] / statistics.median(ts),
                         "raw_s": [round(t, 4) for t in ts]})
    return rows


# ---- 2. head memory per rank --------------------------------------------------------------------

def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"/proc/self/status has no {field} line")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size (Linux >= 4.0)
        return True
    except OSError:
        return False


def _head_step_peak(num_local: int, batch: int, sample_rate: float = 1.0) -> int:
    """Resident bytes added at the peak of one SGD step of a PartialFC shard (built inside)."""
    import gc

    import torch

    from pytorch_impl.partial_fc import PartialFC

    gc.collect()
    before = _rss_bytes("VmRSS")
    if not _reset_peak():
        raise OSError("cannot reset the peak RSS (/proc/self/clear_refs); head memory needs it")
    head = PartialFC("arcface", num_classes=num_local, embedding_size=D,
                     sample_rate=sample_rate)
    opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, D, requires_grad=True)
    y = torch.randint(0, num_local, (batch,))
    head(x, y).backward()
    opt.step()
    peak = _rss_bytes("VmHWM") - before
    del head, opt, x, y
    gc.collect()
    return peak


def _head_memory(quick: bool) -> list[dict]:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    batch = 128
    sizes = (10_000, 20_000, 40_000) if quick else (25_000, 50_000, 100_000, 200_000)
    _head_step_peak(1000, batch)  # allocator and thread pools warm
    peaks = {c: [_head_step_peak(c, batch) for _ in range(1 if quick else 2)] for c in sizes}
    cs = np.array(sizes, dtype=float)
    med = np.array([statistics.median(peaks[c]) for c in sizes], dtype=float)
    per_class, fixed = np.polyfit(cs, med, 1)
    theory = 3 * D * 4 + 2 * batch * 4  # W, grad W, momentum (fp32) + logits/softmax, grad
    rows = []
    for c in sizes:
        rows.append({"section": SECTION, "case": f"head memory per rank, D={D}, B={batch}",
                     "impl": f"PartialFC shard C_k={c}", "baseline": "", "repeats": len(peaks[c]),
                     "median_s": float("nan"), "min_s": float("nan"), "max_s": float("nan"),
                     "ratio": float("nan"), "peak_bytes": statistics.median(peaks[c]),
                     "raw_bytes": peaks[c]})
    proj = {}
    for label, classes, ranks in (("2M classes, 8 ranks", 2_000_000, 8),
                                  ("2M classes, 1 rank", 2_000_000, 1),
                                  ("85k classes (MS1MV2), 8 ranks", 85_742, 8)):
        per_rank = -(-classes // ranks)
        proj[label] = fixed + per_class * per_rank
    rows.append({"section": SECTION, "case": f"head memory per rank, D={D}, B={batch}",
                 "impl": "linear fit", "baseline": "", "repeats": len(sizes),
                 "median_s": float("nan"), "min_s": float("nan"), "max_s": float("nan"),
                 "ratio": float("nan"), "bytes_per_class": float(per_class),
                 "fixed_bytes": float(fixed), "theory_bytes_per_class": theory,
                 "projection_bytes": {k: float(v) for k, v in proj.items()}})
    return rows


# ---- 3. head time vs number of classes ------------------------------------------------------

def _head_time(quick: bool) -> list[dict]:
    import torch

    from pytorch_impl.losses import build_loss
    from pytorch_impl.partial_fc import PartialFC

    batch, repeats = 64, (2 if quick else 5)
    torch.manual_seed(0)
    x = torch.randn(batch, D, requires_grad=True)
    cases = []
    for c in ((1_000, 10_000) if quick else (1_000, 10_000, 100_000)):
        cases.append((c, "single-process head (MarginSoftmax)",
                      build_loss("arcface", num_classes=c, embedding_size=D)))
    big = 100_000 if quick else 1_000_000
    shard = -(-big // 8)
    cases.append((big, f"PartialFC, 1 of 8 ranks (C_k={shard}), r=1",
                  PartialFC("arcface", num_classes=shard, embedding_size=D)))
    cases.append((big, f"PartialFC, 1 of 8 ranks (C_k={shard}), r=0.1",
                  PartialFC("arcface", num_classes=shard, embedding_size=D, sample_rate=0.1)))
    rows, base = [], None
    for c, impl, head in cases:
        y = torch.randint(0, min(c, head.weight.shape[0]), (batch,))

        def step(head=head, y=y):
            head.zero_grad(set_to_none=True)
            x.grad = None
            head(x, y).backward()

        ts = time_runs(step, repeats, warmup=1)
        base = base or statistics.median(ts)
        rows.append({"section": SECTION, "case": f"head forward+backward, B={batch}, D={D}",
                     "impl": f"C={c}: {impl}", "baseline": "C=1000 single-process head",
                     "repeats": repeats, "median_s": statistics.median(ts), "min_s": min(ts),
                     "max_s": max(ts), "ratio": statistics.median(ts) / base,
                     "raw_s": [round(t, 4) for t in ts]})
        del head
    return rows


def measure(quick: bool = False) -> list[dict]:
    """Rows for ``python -m bench perf`` (memory rows carry bytes and NaN times)."""
    return _throughput(quick) + _head_memory(quick) + _head_time(quick)


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def to_markdown(record: dict) -> str:
    """The record written by ``main`` as tables (rows as measured, nothing recomputed but
    the img/s column)."""
    rows = record["rows"]
    lines = ["# Scale-out measurements on this machine", "",
             f"Command: `{record['command']}` (OMP_NUM_THREADS={record['omp_num_threads']})", ""]
    thr = [r for r in rows if "img_per_s" in r]
    lines += ["## Training throughput, 1 vs 2 processes", ""]
    lines += markdown_lines(
        ["case", "impl", "median step s", "min-max s", "img/s", "ratio to baseline", "load avg"],
        ([r["case"], r["impl"], f"{r['median_s']:.3f}", f"{r['min_s']:.3f}-{r['max_s']:.3f}",
          f"{r['img_per_s']:.0f}", f"{r['ratio']:.2f}", r.get("load_avg_1min", "")]
         for r in thr))
    mem = [r for r in rows if "peak_bytes" in r]
    fit = next(r for r in rows if "bytes_per_class" in r)
    lines += ["", "## Head memory per rank (one SGD step, peak RSS added)", ""]
    lines += markdown_lines(["shard classes", "peak", "raw"],
                            ([r["impl"], _gb(r["peak_bytes"]),
                              ", ".join(_gb(b) for b in r["raw_bytes"])] for r in mem))
    lines += ["", f"Linear fit: {fit['bytes_per_class']:.0f} bytes per class + "
              f"{fit['fixed_bytes'] / 2**20:.1f} MiB fixed (fp32 W + grad + momentum + logits "
              f"would be {fit['theory_bytes_per_class']} bytes per class).", ""]
    lines += markdown_lines(["projection (same per-class cost)", "head memory per rank"],
                            ([k, _gb(v)] for k, v in fit["projection_bytes"].items()))
    head = [r for r in rows if r["case"].startswith("head forward")]
    lines += ["", "## Head forward + backward vs number of classes", ""]
    lines += markdown_lines(["case", "impl", "median s", "min-max s", "ratio"],
                            ([r["case"], r["impl"], f"{r['median_s']:.4f}",
                              f"{r['min_s']:.4f}-{r['max_s']:.4f}", f"{r['ratio']:.1f}"]
                             for r in head))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller shapes")
    parser.add_argument("--out", type=Path, help="write the rows and the command here (JSON, "
                        "and the tables beside it as .md)")
    parser.add_argument("--from-json", type=Path, help="only rewrite the .md of a record")
    args = parser.parse_args(argv)
    if args.from_json:
        args.from_json.with_suffix(".md").write_text(
            to_markdown(json.loads(args.from_json.read_text())))
        return 0
    from bench.runtime import configure_threads

    configure_threads()
    rows = measure(quick=args.quick)
    command = "python -m bench.perf.sections.scaling " + " ".join(
        sys.argv[1:] if argv is None else argv)
    record = {"command": command.strip(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "rows": rows}
    print(to_markdown(record))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))
        args.out.with_suffix(".md").write_text(to_markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
