"""Training images and verification pairs, decoded once per process and shared by all cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.binfile import decode_bin, load_bin
from common.face_dataset import FaceRecordDataset

_TRAIN_CACHE: dict = {}
_BIN_CACHE: dict = {}


def train_images(data: Path, image_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(uint8 N x S x S x 3, int64 labels, num_classes), decoded once per process."""
    key = (str(Path(data).resolve()), image_size)
    if key not in _TRAIN_CACHE:
        ds = FaceRecordDataset(data, image_size=image_size)
        try:
            images = np.stack([ds[i][0] for i in range(len(ds))])
        finally:
            ds.close()
        _TRAIN_CACHE[key] = (images, ds.labels.copy(), int(ds.num_classes))
    return _TRAIN_CACHE[key]


def verification_sets(bins: list[Path], image_size: int) -> dict[str, tuple]:
    """{target name: (uint8 images, bool issame)} for each ``.bin``, decoded once per process."""
    out = {}
    for path in bins:
        key = (str(path.resolve()), image_size)
        if key not in _BIN_CACHE:
            encoded, issame = load_bin(path)
            _BIN_CACHE[key] = (decode_bin(encoded, image_size=image_size), np.asarray(issame))
        out[path.stem] = _BIN_CACHE[key]
    return out


def data_fingerprint(data: Path, bins: list[Path]) -> dict:
    """Names, sizes and mtimes: a regenerated data set invalidates finished cells."""
    files = [data / "train.rec", data / "property", *bins]
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.exists()}
