"""Data-layer speed: our RecordIO reader vs MXNet's, read+decode vs bare JPEG decode, images/s
through each backend adapter (0, 1, 2 workers) and raw read rate vs file size.

Rows follow docs/ARCHITECTURE.md (section, case, impl, baseline, repeats, median_s, min_s,
max_s, ratio); ratio = median / the baseline's median in the same run, and ``per_s`` is items
per second at the median.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.perf.timing import time_runs
from bench.report.tables import markdown_table

SECTION = "data"


def _row(case, impl, times, items, baseline=None, base_median=None):
    med = statistics.median(times)
    return {"section": SECTION, "case": case, "impl": impl, "baseline": baseline or impl,
            "repeats": len(times), "median_s": med, "min_s": min(times), "max_s": max(times),
            "ratio": med / base_median if base_median else 1.0, "items": items,
            "per_s": items / med if med else float("inf")}


def _pair(case, ours, theirs, ours_name, their_name, n, repeats, chunk=200):
    """Time ``theirs`` (baseline) and ``ours`` over items 0..n-1, alternating every ``chunk``
    items, so that load from other processes on the machine hits both alike."""
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        a = b = 0.0
        for start in range(0, n, chunk):
            items = range(start, min(n, start + chunk))
            t = time.perf_counter()
            theirs(items)
            a += time.perf_counter() - t
            t = time.perf_counter()
            ours(items)
            b += time.perf_counter() - t
        t_theirs.append(a)
        t_ours.append(b)
    base = statistics.median(t_theirs)
    return [_row(case, their_name, t_theirs, n, their_name, base),
            _row(case, ours_name, t_ours, n, their_name, base)]


def _raw_reads(folder, repeats):
    import mxnet as mx

    from common.recordio import RecordReader

    idx, rec = str(folder / "train.idx"), str(folder / "train.rec")
    ours = RecordReader(idx, rec)
    theirs = mx.recordio.MXIndexedRecordIO(idx, rec, "r")
    keys = list(np.random.default_rng(0).permutation(ours.keys).tolist())
    rows = _pair("record reads (random order)", lambda it: [ours.read_idx(keys[i]) for i in it],
                 lambda it: [theirs.read_idx(keys[i]) for i in it], "common.recordio.RecordReader",
                 "mxnet.recordio.MXIndexedRecordIO", len(keys), repeats)
    theirs.close()
    ours.close()
    return rows


def _decode(folder, repeats):
    import cv2

    from common.face_dataset import FaceRecordDataset

    ds = FaceRecordDataset(folder)
    payloads = [ds.read_raw(i)[1] for i in range(len(ds))]

    def bare(items):
        for i in items:
            cv2.cvtColor(cv2.imdecode(np.frombuffer(payloads[i], np.uint8), cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB)

    def ours(items):  # like bare(): nothing kept, so both pay the same allocator traffic
        for i in items:
            ds[i]

    rows = _pair("read+decode vs bare JPEG decode", ours, bare,
                 "FaceRecordDataset[i]", "cv2.imdecode+cvtColor (bytes in memory)", len(ds),
                 repeats)
    cached = FaceRecordDataset(folder, cache=True)
    [cached[i] for i in range(len(cached))]
    t = time_runs(lambda: [cached[i] for i in range(len(cached))], repeats)
    rows.append(_row("read+decode vs bare JPEG decode", "FaceRecordDataset(cache=True)[i], warm",
                     t, len(ds), rows[0]["impl"], rows[0]["median_s"]))
    return rows


def _adapters(folder, repeats, workers):
    from common.face_dataset import FaceRecordDataset
    from common.sampler import EpochSampler
    from gluon_impl import data as gdata
    from pytorch_impl import data as tdata

    labels = FaceRecordDataset(folder).labels
    sampler = EpochSampler(labels, 64, seed=0)
    items = len(sampler) * 64
    rows = []
    for name, mod in (("pytorch_impl.data", tdata), ("gluon_impl.data", gdata)):
        ds = mod.FaceDataset(folder)
        base = None
        for w in workers:
            t = time_runs(lambda mod=mod, ds=ds, w=w: [b for b in mod.make_loader(ds, sampler, 0,
                                                                                  w)],
                          repeats)
            row = _row("adapter images/s (batch 64)", f"{name} num_workers={w}", t, items,
                       f"{name} num_workers=0", base)
            base = base or row["median_s"]
            rows.append(row)
    return rows


def _file_sizes(tmp, sizes, repeats):
    from common.recordio import RecordReader, RecordWriter

    rows = []
    rng = np.random.default_rng(0)
    payload = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    base = None
    for n in sizes:
        idx, rec = tmp / f"s{n}.idx", tmp / f"s{n}.rec"
        with RecordWriter(idx, rec) as w:
            for k in range(n):
                w.write_idx(k, payload)
        reader = RecordReader(idx, rec)
        sample = rng.permutation(n)[:sizes[0]].tolist()  # same count per size: ratio = per read
        t = time_runs(lambda r=reader, s=sample: [r.read_idx(k) for k in s], repeats)
        mb = rec.stat().st_size / 2**20
        row = _row("raw read rate vs .rec size (4 KiB records, random keys)",
                   f"RecordReader {n} records ({mb:.0f} MiB)", t, len(sample),
                   f"RecordReader {sizes[0]} records", base)
        base = base or row["median_s"]
        rows.append(row)
        reader.close()
        rec.unlink()
    return rows


def measure(quick: bool = False) -> list[dict]:
    """All data-layer rows; ``quick`` uses a smaller set and fewer repeats."""
    from common.synthetic import generate

    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ids = 40 if quick else 100
        generate(tmp / "set", num_identities=ids, images_per_identity=20, num_pairs=0,
                 heldout_identities=0, progress=False)
        rows = _raw_reads(tmp / "set", repeats)
        rows += _decode(tmp / "set", repeats)
        rows += _adapters(tmp / "set", 1 if quick else 2, (0, 1, 2))
        sizes = (1000, 10000) if quick else (1000, 10000, 50000)
        rows += _file_sizes(tmp, sizes, repeats)
    return rows


def format_rows(rows) -> str:
    return markdown_table(["case", "impl", "baseline", "repeats", "median s", "items/s", "ratio"],
                          ([r["case"], r["impl"], r["baseline"], r["repeats"],
                            f"{r['median_s']:.4f}", f"{r['per_s']:.0f}", f"{r['ratio']:.3f}"]
                           for r in rows))
