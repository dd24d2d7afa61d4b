"""InsightFace verification ``.bin`` files (lfw.bin, cfp_fp.bin, agedb_30.bin): read and write.

Format (../shared/SPEC.md section 2): a pickle of ``(bins, issame_list)``; ``bins`` holds 2P
encoded images (bytes, or numpy uint8 arrays of encoded bytes), pair i is
``(bins[2i], bins[2i+1])``, ``issame_list`` P booleans. Files written by Python 2 are read
with ``encoding='bytes'`` (as InsightFace's ``verification.py`` does).

Security: unpickling runs code named by the file. :func:`load_bin` therefore uses a restricted
unpickler that resolves only the globals numpy arrays need -
``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype`` (non-object dtypes
only) and ``numpy.core.numeric._frombuffer`` (protocol-5 arrays) - plus ``_codecs.encode``,
which Python 3 uses to pickle ``bytes`` at protocols 0-2. Anything else (``os.system``,
``builtins.eval``, ...) raises :class:`~common.recordio.DataFormatError`. Before unpickling,
every opcode and length field is checked against the file size (``pickletools.genops``), so a
forged length cannot make the unpickler allocate gigabytes. The result must be a 2-sequence of
(encoded images, booleans) with ``len(bins) == 2 * len(issame)``.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
from pathlib import Path

import numpy as np
import numpy.core.multiarray
import numpy.core.numeric

from common.images import decode, to_size
from common.recordio import DataFormatError


def _safe_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"object dtype {dtype} is not allowed in a .bin")
    return dtype


def _codecs_encode(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "ascii"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode(encoding)


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): numpy.core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.numeric", "_frombuffer"): numpy.core.numeric._frombuffer,
    ("_codecs", "encode"): _codecs_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if isinstance(module, bytes):
            module = module.decode("latin1")
        if isinstance(name, bytes):
            name = name.decode("latin1")
        # numpy 2 writes numpy._core.*; it names the same functions
        key = (module.replace("numpy._core", "numpy.core"), name)
        if key not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a .bin")
        return _ALLOWED[key]


def _unpickle(data: bytes, path, encoding: str):
    last = 0
    try:
        for _opcode, _arg, pos in pickletools.genops(io.BytesIO(data)):
            last = pos
    except (ValueError, EOFError) as exc:
        raise DataFormatError(path, f"malformed pickle (after the opcode at this offset): {exc}",
                              last) from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except UnicodeDecodeError:
        raise
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError, KeyError,
            IndexError, MemoryError, OverflowError, struct.error) as exc:
        raise DataFormatError(path, f"bad pickle: {type(exc).__name__}: {exc}") from None


def load_bin(path):
    """A verification ``.bin`` -> (list of encoded image bytes, numpy bool array of P pairs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: verification .bin not found")
    data = path.read_bytes()
    try:
        obj = _unpickle(data, path, "ASCII")
    except UnicodeDecodeError:  # Python 2 str objects
        obj = _unpickle(data, path, "bytes")
    return _check(obj, path)


def _check(obj, path):
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise DataFormatError(path, f"expected a pickled (bins, issame_list) pair, got "
                              f"{type(obj).__name__}")
    raw_bins, raw_same = obj
    if not isinstance(raw_bins, (list, tuple)):
        raise DataFormatError(path, f"bins must be a list, got {type(raw_bins).__name__}")
    bins = []
    for i, b in enumerate(raw_bins):
        if isinstance(b, (bytes, bytearray)):
            bins.append(bytes(b))
        elif isinstance(b, np.ndarray) and b.dtype == np.uint8 and b.ndim == 1:
            bins.append(b.tobytes())
        else:
            kind = f"{b.dtype} {b.shape}" if isinstance(b, np.ndarray) else type(b).__name__
            raise DataFormatError(path, f"bins[{i}] is {kind}, expected encoded image bytes")
    if isinstance(raw_same, np.ndarray):
        if raw_same.ndim != 1 or raw_same.dtype.kind not in "bi":
            raise DataFormatError(path, f"issame_list is {raw_same.dtype} {raw_same.shape}, "
                                  "expected booleans")
        raw_same = raw_same.tolist()
    if not isinstance(raw_same, (list, tuple)):
        raise DataFormatError(path, f"issame_list must be a list, got {type(raw_same).__name__}")
    for i, v in enumerate(raw_same):
        if not isinstance(v, (bool, np.bool_)) and v not in (0, 1):
            raise DataFormatError(path, f"issame_list[{i}] is {v!r}, expected a boolean")
    if len(bins) % 2:
        raise DataFormatError(path, f"odd number of images ({len(bins)}): pairs need 2 each")
    if len(bins) != 2 * len(raw_same):
        raise DataFormatError(path, f"{len(bins)} images make {len(bins) // 2} pairs but "
                              f"issame_list has {len(raw_same)} entries")
    return bins, np.asarray(raw_same, dtype=bool)


def write_bin(path, bins, issame) -> None:
    """Write ``(bins, issame_list)`` as InsightFace does (pickle protocol 4; readable by any
    Python 3). ``bins``: 2P encoded images (bytes); ``issame``: P booleans."""
    bins = [bytes(b) for b in bins]
    issame = [bool(v) for v in np.asarray(issame).tolist()]
    if len(bins) % 2:
        raise ValueError(f"bins must hold an even number of images, got {len(bins)}")
    if len(bins) != 2 * len(issame):
        raise ValueError(f"issame must have len(bins) / 2 = {len(bins) // 2} entries, "
                         f"got {len(issame)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump((bins, issame), f, protocol=4)


def decode_bin(source, image_size: int | None = None) -> np.ndarray:
    """A ``.bin`` path (or its list of encoded images) -> RGB uint8 N x H x W x 3.

    With ``image_size`` every image is resized/padded to that square; without it all images
    must already share one size.
    """
    bins = load_bin(source)[0] if isinstance(source, (str, Path)) else list(source)
    name = str(source) if isinstance(source, (str, Path)) else "bins"
    images = []
    for i, b in enumerate(bins):
        img = decode(b, where=f"{name}[{i}]")
        if image_size is not None:
            img = to_size(img, image_size)
        elif images and img.shape != images[0].shape:
            raise ValueError(f"{name}[{i}] has shape {img.shape}, bins[0] has {images[0].shape};"
                             " pass image_size to resize")
        images.append(img)
    if not images:
        return np.zeros((0, image_size or 0, image_size or 0, 3), dtype=np.uint8)
    return np.stack(images)
