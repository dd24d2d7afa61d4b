"""Face data sets in InsightFace's ``train.rec`` layout (or plain im2rec ``.rec`` files).

InsightFace layout (../shared/SPEC.md section 2): keys 1..N hold images (JPEG payload; label
= identity id, or a vector whose first value is the id); key 0 is a header record with flag 2,
label ``[N+1, N+1+K]`` and an empty payload; keys N+1..N+K are identity records with flag 2
and label ``[start, end)``, the image keys of one identity. ``property`` holds
``num_classes,height,width``. A ``.rec`` whose key 0 is not such a header is read as im2rec
output: every key is an image and its label comes from its own header.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.images import decode, to_size
from common.recordio import (
    DataFormatError,
    IRHeader,
    RecordReader,
    RecordWriter,
    pack,
    unpack,
)


def resolve_paths(path):
    """A folder (train.rec/train.idx/property) or a ``.rec`` path -> (rec, idx, property|None)."""
    path = Path(path)
    if path.is_dir():
        rec, idx, prop = path / "train.rec", path / "train.idx", path / "property"
        for p in (rec, idx, prop):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: missing (an InsightFace folder holds train.rec, "
                                        "train.idx and property)")
        return rec, idx, prop
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data set (a folder or a .rec file)")
    idx = path.with_suffix(".idx")
    if not idx.is_file():
        raise FileNotFoundError(f"{idx}: missing index file for {path}")
    prop = path.parent / "property"
    return path, idx, (prop if prop.is_file() else None)


def read_property(path):
    """``property`` -> (num_classes, height, width); errors name the file."""
    text = Path(path).read_text(errors="replace").strip().splitlines()
    try:
        fields = [int(v) for v in text[0].split(",")]
        if len(fields) != 3 or min(fields) < 1:
            raise ValueError
    except (ValueError, IndexError):
        raise DataFormatError(
            path, f"first line must be 'num_classes,height,width', got {text[:1]!r}") from None
    return tuple(fields)


def _label_of(header, path, key) -> int:
    value = float(header.label[0] if header.flag > 0 else header.label)
    if not (value >= 0 and value == int(value)):
        raise DataFormatError(path, f"label {value} is not a non-negative integer", key=key)
    return int(value)


class FaceRecordDataset:
    """Images and identity labels from an InsightFace ``train.rec`` (or a plain im2rec ``.rec``).

    ``len``, ``[i] -> (RGB uint8 HxWx3, int label)``, ``num_classes``, ``labels`` (int64),
    ``identity_indices`` ({label: [sample indices]}), ``read_raw(i) -> (IRHeader, bytes)``.
    ``image_size`` resizes/pads every image to a square; ``cache=True`` keeps decoded images in
    memory (per process), for small sets read for many epochs.
    """

    def __init__(self, path, image_size: int | None = None, cache: bool = False):
        rec, idx, prop = resolve_paths(path)
        self.path = str(path)
        self.reader = RecordReader(idx, rec)
        try:
            self._index(rec, prop, image_size, cache)
        except BaseException:
            self.reader.close()  # a refused file is not left open
            raise

    def _index(self, rec, prop, image_size, cache) -> None:
        self.image_size = image_size
        self._cache = {} if cache else None
        self.image_shape = None
        header = self._insightface_header()
        if header is not None:
            self.keys, self.labels = self._from_identity_records(*header)
            self.layout = "insightface"
        else:
            self.keys = np.asarray(self.reader.keys, dtype=np.int64)
            self.labels = np.asarray(
                [_label_of(self._header(k), rec, k) for k in self.reader.keys], dtype=np.int64
            )
            self.layout = "im2rec"
        top = int(self.labels.max()) + 1 if len(self.labels) else 0
        if prop is not None:
            self.num_classes, h, w = read_property(prop)
            self.image_shape = (h, w)
            if top > self.num_classes:
                raise DataFormatError(
                    prop, f"num_classes {self.num_classes} but {rec} holds label {top - 1}")
        else:
            self.num_classes = top
        self._key_list, self._label_list = self.keys.tolist(), self.labels.tolist()  # fast index
        self.identity_indices = {}
        for i, label in enumerate(self.labels.tolist()):
            self.identity_indices.setdefault(label, []).append(i)

    # -- layout detection ----------------------------------------------------------------
    def _header(self, key) -> IRHeader:
        record = self.reader.read_idx(key)
        try:
            return unpack(record)[0]
        except ValueError as exc:
            raise DataFormatError(self.reader.rec_path, str(exc), self.reader.idx[key],
                                  key) from None

    def _insightface_header(self):
        if 0 not in self.reader:
            return None
        record = self.reader.read_idx(0)
        try:
            header, payload = unpack(record)
        except ValueError:
            return None
        if header.flag != 2 or payload:
            return None
        first_id, end_id = (int(v) for v in header.label)
        if not 1 <= first_id <= end_id:
            raise DataFormatError(
                self.reader.rec_path, f"header record label {list(header.label)} is not "
                "[N+1, N+1+K] with N >= 0", self.reader.idx[0], 0)
        return first_id, end_id

    def _from_identity_records(self, first_id, end_id):
        rec = self.reader.rec_path
        n = first_id - 1
        for key in (1, n) if n else ():
            if key not in self.reader:
                raise DataFormatError(self.reader.idx_path, f"image key {key} of 1..{n} is missing",
                                      key=key)
        labels = np.full(n, -1, dtype=np.int64)
        for key in range(first_id, end_id):
            if key not in self.reader:
                raise DataFormatError(self.reader.idx_path, "identity record missing", key=key)
            header = self._header(key)
            if header.flag != 2:
                raise DataFormatError(rec, f"identity record has flag {header.flag}, expected 2",
                                      self.reader.idx[key], key)
            start, end = (int(v) for v in header.label)
            if start >= end:
                raise DataFormatError(rec, f"empty identity: image range [{start}, {end})",
                                      self.reader.idx[key], key)
            if start < 1 or end > first_id:
                raise DataFormatError(rec, f"identity range [{start}, {end}) outside images "
                                      f"1..{n}", self.reader.idx[key], key)
            if (labels[start - 1:end - 1] != -1).any():
                raise DataFormatError(rec, f"identity range [{start}, {end}) overlaps another",
                                      self.reader.idx[key], key)
            labels[start - 1:end - 1] = _label_of(self._header(start), rec, start)
        if (labels == -1).any():
            missing = int(np.flatnonzero(labels == -1)[0]) + 1
            raise DataFormatError(rec, "image belongs to no identity record", key=missing)
        return np.arange(1, first_id, dtype=np.int64), labels

    # -- access ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    def read_raw(self, i: int):
        """(IRHeader, encoded image bytes) of sample ``i``."""
        if not 0 <= i < len(self.keys):
            raise IndexError(f"sample index {i} out of range [0, {len(self.keys)})")
        key = self._key_list[i]
        record = self.reader.read_idx(key)
        try:
            header, payload = unpack(record)
        except ValueError as exc:
            raise DataFormatError(self.reader.rec_path, str(exc), self.reader.idx[key],
                                  key) from None
        label = _label_of(header, self.reader.rec_path, key)
        if label != self._label_list[i]:
            raise DataFormatError(self.reader.rec_path, f"image label {label} disagrees with its "
                                  f"identity record ({self._label_list[i]})", self.reader.idx[key],
                                  key)
        return header, payload

    def __getitem__(self, i):
        i = int(i)
        if self._cache is not None and i in self._cache:
            return self._cache[i], self._label_list[i]
        _, payload = self.read_raw(i)
        try:
            img = decode(payload)
        except ValueError as exc:  # name the place only on failure: formatting costs per image
            key = int(self.keys[i])
            where = f"{self.reader.rec_path}, offset {self.reader.idx[key]}, key {key}"
            raise ValueError(str(exc).replace("image:", f"{where}:", 1)) from None
        if self.image_size is not None:
            img = to_size(img, self.image_size)
        if self._cache is not None:
            self._cache[i] = img
        return img, self._label_list[i]

    def close(self) -> None:
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FaceRecordWriter:
    """Writes the InsightFace layout: train.rec/train.idx/property in ``out_dir``.

    ``add_identity(images) -> label`` takes the encoded images (bytes) of one identity; labels
    are 0, 1, ... in call order. The header record (key 0) is written first with a fixed-size
    placeholder and patched on ``close()``, so readers that scan the file in order see it first.
    """

    def __init__(self, out_dir, image_size: int = 112):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.image_size = int(image_size)
        self._writer = RecordWriter(self.out_dir / "train.idx", self.out_dir / "train.rec")
        self._writer.write_idx(0, pack(IRHeader(2, [0.0, 0.0], 0, 0), b""))
        self._ranges = []
        self._next_key = 1

    def add_identity(self, images) -> int:
        label = len(self._ranges)
        start = self._next_key
        for payload in images:
            header = IRHeader(0, float(label), self._next_key, 0)
            self._writer.write_idx(self._next_key, pack(header, payload))
            self._next_key += 1
        if self._next_key == start:
            raise ValueError(f"identity {label} has no images (empty identity)")
        self._ranges.append((start, self._next_key))
        return label

    @property
    def num_images(self) -> int:
        return self._next_key - 1

    def close(self) -> None:
        if self._writer is None:
            return
        first_id = self._next_key
        for k, (start, end) in enumerate(self._ranges):
            self._writer.write_idx(first_id + k, pack(IRHeader(2, [start, end], first_id + k, 0),
                                                      b""))
        self._writer.close()
        header = pack(IRHeader(2, [first_id, first_id + len(self._ranges)], 0, 0), b"")
        with open(self.out_dir / "train.rec", "r+b") as f:
            f.seek(8)  # the placeholder has the same length; only its payload changes
            f.write(header)
        (self.out_dir / "property").write_text(
            f"{len(self._ranges)},{self.image_size},{self.image_size}\n")
        self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        elif self._writer is not None:
            self._writer.close()
