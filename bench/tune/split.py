"""The validation split of a tuning study: identities carved out of the training identities.

Tuning must never see the test pairs, so its objective is verification accuracy on identities
taken out of the *training* set. From a prepared InsightFace folder (train.rec, train.idx,
property), ``prepare_split`` draws ``fraction`` of the identities with at least two images
(rounded, at least 2, leaving at least 2 to train on) with ``np.random.default_rng([seed, 0])``,
writes the others, relabelled 0..n-1 in their original order, as a new train.rec (the encoded
images copied byte for byte) and builds ``val.bin`` from the carved ones: as many pairs as they
allow up to ``max_pairs`` (a multiple of 20), 10 folds of half same / half different pairs
(``common.convert.make_pairs`` with ``np.random.default_rng([seed, 1])``, LFW's layout).
The folder holds no other ``.bin``: the harness evaluates every ``.bin`` of its data folder,
and the test pairs stay out of reach.

``tuning_split.json`` (written last) records the source files (size and mtime), the
fraction, seed and pair limit, the carved and kept identities (original labels; kept label i
is ``train_labels[i]``), the sizes and the pair list. A folder whose record matches the
request is reused; any other is rebuilt. File mtimes are pinned, as in ``bench.real.data``: the
harness fingerprints data files by size and mtime, and the build is deterministic.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common.binfile import write_bin
from common.convert import make_pairs, max_pairs
from common.face_dataset import FaceRecordDataset, FaceRecordWriter, read_property

RECORD = "tuning_split.json"
VAL_BIN = "val.bin"
SOURCE_FILES = ("train.rec", "train.idx", "property")
PINNED_MTIME_NS = 1_700_000_000 * 10**9


@dataclass(frozen=True)
class SplitSpec:
    """What decides a split: the carved fraction, the seed and the validation pair limit."""

    fraction: float = 0.2
    seed: int = 0
    max_pairs: int = 1000

    def check(self) -> None:
        if not 0 < self.fraction < 1:
            raise ValueError(f"--val-fraction must be in (0, 1), got {self.fraction!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"--split-seed must be an integer >= 0, got {self.seed!r}")
        if self.max_pairs < 20 or self.max_pairs % 20:
            raise ValueError(f"--val-pairs must be a positive multiple of 20 (10 folds, half "
                             f"same), got {self.max_pairs!r}")


def carved_count(eligible: int, total: int, fraction: float) -> int:
    """Identities to carve: ``round(fraction * total)``, at least 2, at most the ``eligible``
    ones (>= 2 images), leaving at least 2 identities to train on."""
    want = max(2, round(fraction * total))
    n = min(want, eligible, total - 2)
    if n < 2:
        raise ValueError(f"a validation split needs >= 2 identities with >= 2 images and >= 2 "
                         f"left to train on; the set has {total} identities, {eligible} with "
                         ">= 2 images")
    return n


def source_files(source: Path) -> dict:
    """{file: [size, mtime_ns]} of the source folder's training files (what the split is of)."""
    out = {}
    for name in SOURCE_FILES:
        st = (Path(source) / name).stat()
        out[name] = [st.st_size, st.st_mtime_ns]
    return out


def request(source: Path, spec: SplitSpec) -> dict:
    """The part of the record that must match for a split folder to be reused."""
    return {"source_files": source_files(source), **asdict(spec)}


def read_record(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None


def is_current(folder: Path, source: Path, spec: SplitSpec) -> bool:
    record = read_record(folder)
    files = all((Path(folder) / n).is_file() for n in (*SOURCE_FILES, VAL_BIN))
    want = request(source, spec)
    return bool(files and record and all(record.get(k) == v for k, v in want.items()))


def build_split(source: Path, out: Path, spec: SplitSpec) -> dict:
    """Write the split of ``source`` into ``out``; returns its record (also in RECORD)."""
    spec.check()
    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise ValueError(f"the validation split of {source} cannot be written over it")
    out.mkdir(parents=True, exist_ok=True)
    (out / RECORD).unlink(missing_ok=True)  # written last: its presence means "complete"
    for stale in out.glob("*.bin"):
        stale.unlink()
    with FaceRecordDataset(source) as ds:
        _, size, _ = read_property(source / "property")
        labels = sorted(ds.identity_indices)
        eligible = [k for k in labels if len(ds.identity_indices[k]) >= 2]
        n_val = carved_count(len(eligible), len(labels), spec.fraction)
        rng = np.random.default_rng([spec.seed, 0])
        val = sorted(int(k) for k in rng.choice(eligible, n_val, replace=False))
        val_set = set(val)
        kept = [k for k in labels if k not in val_set]
        with FaceRecordWriter(out, size) as writer:
            for k in kept:
                writer.add_identity([ds.read_raw(i)[1] for i in ds.identity_indices[k]])
            train_images = writer.num_images
        val_images = [[ds.read_raw(i)[1] for i in ds.identity_indices[k]] for k in val]
    sizes = [len(x) for x in val_images]
    num_pairs = max_pairs(sizes, spec.max_pairs)
    if num_pairs == 0:
        raise ValueError(f"the {n_val} carved identities give fewer than 10 distinct same "
                         "pairs; raise --val-fraction")
    pairs = make_pairs(sizes, num_pairs, np.random.default_rng([spec.seed, 1]))
    write_bin(out / VAL_BIN, [val_images[g][i] for a, b, _ in pairs for g, i in (a, b)],
              [same for _, _, same in pairs])
    record = {**request(source, spec), "source": str(source), "identities": len(labels),
              "val_identities": n_val, "train_identities": len(kept),
              "val_images": sum(sizes), "train_images": train_images, "pairs": num_pairs,
              "folds": 10, "bin": VAL_BIN, "val_labels": val, "train_labels": kept,
              "pair_list": [[val[a[0]], a[1], val[b[0]], b[1], same] for a, b, same in pairs]}
    for p in out.iterdir():
        if p.is_file():
            os.utime(p, ns=(PINNED_MTIME_NS, PINNED_MTIME_NS))
    (out / RECORD).write_text(json.dumps(record, indent=1))
    os.utime(out / RECORD, ns=(PINNED_MTIME_NS, PINNED_MTIME_NS))
    return record


def prepare_split(source: Path, out: Path, spec: SplitSpec = SplitSpec()) -> dict:
    """The split folder ``out`` of ``source``: reused when its record matches, else rebuilt;
    returns the record."""
    spec.check()
    if is_current(out, source, spec):
        return read_record(out)
    return build_split(source, out, spec)


def summary(record: dict) -> dict:
    """The record without its long lists (what a study and a report carry)."""
    return {k: v for k, v in record.items() if k not in ("train_labels", "pair_list")}
