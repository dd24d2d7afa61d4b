"""Image decode/encode, resize-to-square and normalisation shared by both backends.

Both adapters build their batches with :func:`make_batch`, so PyTorch and Gluon receive
bit-identical float32 arrays. Normalisation is InsightFace's: ``(x / 255 - 0.5) / 0.5``
on RGB, laid out N x 3 x H x W.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError


def decode(data, where: str = "image") -> np.ndarray:
    """Encoded bytes (JPEG, PNG, PGM, GIF, ... anything OpenCV or Pillow reads) -> RGB uint8 HxWx3.

    OpenCV first (fast path), Pillow for formats OpenCV lacks (GIF). Greyscale becomes 3 equal
    channels. Undecodable bytes raise ``ValueError`` naming ``where``.
    """
    import cv2  # imported on use: the CLI checks its arguments without loading OpenCV
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is not None:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    try:
        with Image.open(io.BytesIO(buf.tobytes())) as pil:
            return np.asarray(pil.convert("RGB"), dtype=np.uint8).copy()
    except UnidentifiedImageError:
        reason = "neither OpenCV nor Pillow recognises the format"
    except (OSError, ValueError, SyntaxError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    raise ValueError(
        f"{where}: undecodable image ({buf.size} bytes, starts {buf[:8].tobytes()!r}): {reason}")


def read_image(path) -> np.ndarray:
    """An image file -> RGB uint8 HxWx3 (errors name the file)."""
    with open(path, "rb") as f:
        return decode(f.read(), where=str(path))


def encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    """RGB uint8 HxWx3 -> JPEG bytes (OpenCV/libjpeg, deterministic for a given quality)."""
    import cv2  # imported on use: the CLI checks its arguments without loading OpenCV
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {img.shape}")
    return buf.tobytes()


def to_size(img: np.ndarray, size: int) -> np.ndarray:
    """Resize keeping the aspect ratio so the longer side is ``size``, then pad the shorter side
    symmetrically with black to a ``size`` x ``size`` square (no crop: nothing of the face is lost).
    """
    import cv2  # imported on use: the CLI checks its arguments without loading OpenCV
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img, (nw, nh), interpolation=interp)
    top, left = (size - nh) // 2, (size - nw) // 2
    return cv2.copyMakeBorder(
        img, top, size - nh - top, left, size - nw - left, cv2.BORDER_CONSTANT, value=(0, 0, 0)
    )


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 N x H x W x 3 (RGB) -> float32 N x 3 x H x W, ``(x / 255 - 0.5) / 0.5``."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 N x H x W x 3, got {images.dtype} {tuple(images.shape)}"
        )
    x = images.astype(np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray((x / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5))


def make_batch(images, flips=None) -> np.ndarray:
    """A list/array of RGB uint8 HxWx3 images + the sampler's flip flags -> normalised NCHW batch.

    ``flips[i]`` mirrors image i left-right before normalising. Both backend adapters call this,
    so both see identical numbers.
    """
    batch = np.stack([np.asarray(im) for im in images])
    if flips is not None:
        flips = np.asarray(flips, dtype=bool)
        if flips.shape != (len(batch),):
            raise ValueError(f"flips must have shape ({len(batch)},), got {flips.shape}")
        batch[flips] = batch[flips][:, :, ::-1]
    return normalize(batch)
