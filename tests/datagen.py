"""Tiny generated data for the data-layer tests (no files from /work/shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from common.face_dataset import FaceRecordWriter
from common.images import encode_jpeg


def face_image(identity: int, index: int, size=(40, 32)) -> np.ndarray:
    """A small RGB image whose colour says the identity and whose stripe says the index."""
    rng = np.random.default_rng([identity, index])
    img = np.zeros(size + (3,), dtype=np.uint8)
    img[:] = (37 * identity % 256, 90 + 13 * identity % 160, 200 - 17 * identity % 180)
    img[:, index % size[1]] = 255
    img += rng.integers(0, 8, img.shape, dtype=np.uint8)
    return img


def write_rec(folder, counts=(3, 2, 4), size=32) -> list[list[bytes]]:
    """InsightFace-layout train.rec with len(counts) identities; returns the encoded images."""
    encoded = []
    with FaceRecordWriter(folder, size) as w:
        for k, n in enumerate(counts):
            imgs = [encode_jpeg(face_image(k, j, (size, size)), 90) for j in range(n)]
            w.add_identity(imgs)
            encoded.append(imgs)
    return encoded


def photo_folder(root, counts=(4, 3, 5, 4, 3), formats=("jpg", "png", "pgm", "gif")) -> Path:
    """root/id<k>/img<j>.<fmt>, mixed formats and sizes, greyscale for pgm."""
    root = Path(root)
    for k, n in enumerate(counts):
        (root / f"id{k}").mkdir(parents=True, exist_ok=True)
        for j in range(n):
            fmt = formats[(k + j) % len(formats)]
            img = Image.fromarray(face_image(k, j, (40 + 4 * j, 30 + 2 * k)))
            if fmt == "pgm":
                img = img.convert("L")
            img.save(root / f"id{k}" / f"img{j}.{fmt}")
    return root
