"""MXNet RecordIO (``.rec`` + ``.idx``) in pure Python and numpy, byte-compatible with MXNet 1.9.

The API mirrors ``mxnet.recordio`` (``IRHeader``, ``pack``, ``unpack``, ``MXIndexedRecordIO``'s
``write_idx`` / ``read_idx`` / ``keys``) so InsightFace users feel at home; nothing here imports
mxnet. Byte layout (dmlc-core ``recordio.h``, ../shared/SPEC.md section 2):

- a record is ``uint32 magic 0xced7230a``, ``uint32 lrecord = cflag << 29 | length``, ``length``
  payload bytes, zero padding to a multiple of 4 (all little-endian);
- a payload that holds the magic word at a 4-byte-aligned offset is written as parts: cflag 1
  (first), 2 (middle), 3 (last); the reader re-inserts the magic word between parts;
- ``.idx`` is text, one ``key<TAB>byte_offset<LF>`` line per record, keys in any order;
- ``IRHeader`` is ``struct '<IfQQ'`` (flag, label, id, id2); with flag > 0 the label is a vector
  of ``flag`` float32 values at the start of the payload and the header's label field is 0.

Bad bytes raise :class:`DataFormatError` (a ``ValueError``) naming the file, the byte offset and
the key, never a silent wrong result; length fields are checked against the file size before
anything is allocated. Keys are integers (``MXIndexedRecordIO``'s default ``key_type=int``).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import namedtuple

import numpy as np

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
MAX_LENGTH = (1 << 29) - 1
_LENGTH_MASK = (1 << 29) - 1
_HEAD = struct.Struct("<II")
_IR = struct.Struct("<IfQQ")
IR_SIZE = _IR.size

IRHeader = namedtuple("IRHeader", ["flag", "label", "id", "id2"])
IRHeader.__doc__ = "Image record header, as ``mxnet.recordio.IRHeader`` (struct ``<IfQQ``)."


class DataFormatError(ValueError):
    """Malformed data file; the message names the file and the byte offset or key."""

    def __init__(self, path, message, offset=None, key=None):
        where = [str(path)]
        if offset is not None:
            where.append(f"offset {offset}")
        if key is not None:
            where.append(f"key {key}")
        super().__init__(f"{': '.join([', '.join(where), message])}")
        self.path = str(path)
        self.offset = offset
        self.key = key


def pack(header, payload: bytes) -> bytes:
    """IRHeader + payload -> record bytes, as ``mxnet.recordio.pack``.

    A scalar label is stored in the header (flag 0); a sequence label becomes ``flag = len``
    float32 values in front of the payload (header label 0).
    """
    header = IRHeader(*header)
    if np.ndim(header.label) == 0:
        header = header._replace(flag=0, label=float(header.label))
    else:
        label = np.asarray(header.label, dtype="<f4").ravel()
        header = header._replace(flag=int(label.size), label=0.0)
        payload = label.tobytes() + bytes(payload)
    return _IR.pack(*header) + bytes(payload)


def unpack(record: bytes):
    """Record bytes -> (IRHeader, payload), as ``mxnet.recordio.unpack``.

    With flag > 0 the header's label is a float32 numpy vector of ``flag`` values. The payload
    is a slice of ``record`` (bytes in, bytes out).
    """
    if len(record) < IR_SIZE:
        raise ValueError(f"record of {len(record)} bytes is shorter than the IRHeader ({IR_SIZE})")
    header = IRHeader(*_IR.unpack_from(record, 0))
    if header.flag > 0:
        end = IR_SIZE + 4 * header.flag
        if end > len(record):
            raise ValueError(
                f"IRHeader flag {header.flag} announces {4 * header.flag} label bytes, "
                f"record has only {len(record) - IR_SIZE}"
            )
        label = np.frombuffer(record, dtype="<f4", count=header.flag, offset=IR_SIZE)
        return header._replace(label=label.astype(np.float32)), record[end:]
    return header, record[IR_SIZE:]


def _split(payload: bytes):
    """Cut a payload at the magic word found on 4-byte boundaries (dmlc WriteRecord)."""
    parts, start = [], 0
    pos = payload.find(MAGIC_BYTES)
    while pos != -1:
        if pos % 4 == 0:
            parts.append(payload[start:pos])
            start = pos + 4
            pos = payload.find(MAGIC_BYTES, start)
        else:
            pos = payload.find(MAGIC_BYTES, pos + 1)
    parts.append(payload[start:])
    return parts


def encode_record(payload: bytes) -> bytes:
    """Payload -> on-disk bytes (headers, split parts, padding), as dmlc-core writes them."""
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"record length must be < 2**29 bytes, got {len(payload)}")
    parts = _split(payload)
    out = []
    for i, part in enumerate(parts):
        if len(parts) == 1:
            cflag = 0
        else:
            cflag = 1 if i == 0 else (3 if i == len(parts) - 1 else 2)
        out.append(_HEAD.pack(MAGIC, (cflag << 29) | len(part)))
        out.append(part)
    out.append(b"\0" * (-len(payload) % 4))
    return b"".join(out)


class RecordWriter:
    """Indexed RecordIO writer, as ``mxnet.recordio.MXIndexedRecordIO(idx, rec, 'w')``.

    ``write_idx(key, record)`` appends the record and an ``key<TAB>offset`` idx line. Use as a
    context manager or call ``close()``.
    """

    def __init__(self, idx_path, rec_path):
        self.idx_path, self.rec_path = str(idx_path), str(rec_path)
        self._rec = open(self.rec_path, "wb")  # noqa: SIM115  (closed in close())
        self._idx = open(self.idx_path, "w", newline="\n")  # noqa: SIM115
        self._pos = 0
        self.keys = []
        self._seen = set()

    def write_idx(self, key, record: bytes) -> None:
        key = int(key)
        if key < 0:
            raise ValueError(f"key must be >= 0, got {key}")
        if key in self._seen:
            raise ValueError(f"{self.idx_path}: duplicate key {key}")
        data = encode_record(bytes(record))
        self._rec.write(data)
        self._idx.write(f"{key}\t{self._pos}\n")
        self._pos += len(data)
        self._seen.add(key)
        self.keys.append(key)

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self._rec.closed:
            self._rec.close()
            self._idx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_idx_file(idx_path, rec_size: int | None = None) -> dict[int, int]:
    """Parse a ``.idx`` file into {key: offset} (insertion order = file order), with checks."""
    idx_path = str(idx_path)
    if not os.path.isfile(idx_path):
        raise FileNotFoundError(f"{idx_path}: index file not found")
    with open(idx_path, "rb") as f:
        text = f.read()
    index: dict[int, int] = {}
    pos = 0
    for lineno, line in enumerate(text.split(b"\n"), 1):
        where = pos
        pos += len(line) + 1
        line = line.strip()
        if not line:
            continue
        fields = line.split(b"\t")
        try:
            if len(fields) != 2:
                raise ValueError
            key, offset = int(fields[0]), int(fields[1])
        except ValueError:
            raise DataFormatError(
                idx_path, f"line {lineno}: expected 'key<TAB>offset', got {line[:60]!r}", where
            ) from None
        if key in index:
            raise DataFormatError(idx_path, f"line {lineno}: duplicate key", where, key)
        if offset < 0 or offset % 4:
            raise DataFormatError(
                idx_path, f"line {lineno}: record offset {offset} is not a multiple of 4 "
                "(records start on 4-byte boundaries)", where, key)
        if rec_size is not None and offset + _HEAD.size > rec_size:
            raise DataFormatError(
                idx_path, f"line {lineno}: record offset {offset} is past the end of the "
                f".rec ({rec_size} bytes)", where, key)
        index[key] = offset
    if len(set(index.values())) != len(index):
        seen = {}
        for key, offset in index.items():
            if offset in seen:
                raise DataFormatError(idx_path, f"keys {seen[offset]} and {key} point to the same "
                                      f"record offset {offset}", key=key)
            seen[offset] = key
    return index


class RecordReader:
    """Indexed RecordIO reader, as ``mxnet.recordio.MXIndexedRecordIO(idx, rec, 'r')``.

    ``keys`` (idx order), ``read_idx(key) -> bytes``, ``read_at(offset)``; a context manager.
    The ``.rec`` is memory-mapped lazily and reopened in each process (the pid is checked on
    every read), so one reader can be handed to DataLoader workers after ``fork`` or pickled
    for ``spawn``.
    """

    def __init__(self, idx_path, rec_path):
        self.idx_path, self.rec_path = str(idx_path), str(rec_path)
        if not os.path.isfile(self.rec_path):
            raise FileNotFoundError(f"{self.rec_path}: record file not found")
        self.size = os.path.getsize(self.rec_path)
        self.idx = read_idx_file(self.idx_path, self.size)
        self.keys = list(self.idx)
        self._pid = None
        self._file = None
        self._buf = b""

    # -- process-local file handle -------------------------------------------------------
    def _buffer(self):
        if self._pid != os.getpid():
            self._file = open(self.rec_path, "rb")  # noqa: SIM115  (closed in close())
            size = os.fstat(self._file.fileno()).st_size
            if size != self.size:
                raise DataFormatError(
                    self.rec_path, f"file changed size since the index was read "
                    f"({self.size} -> {size} bytes)")
            self._buf = (
                mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            )
            self._pid = os.getpid()
        return self._buf

    def close(self) -> None:
        if self._pid == os.getpid() and self._file is not None:
            if isinstance(self._buf, mmap.mmap):
                self._buf.close()
            self._file.close()
        self._pid, self._file, self._buf = None, None, b""

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_pid=None, _file=None, _buf=b"")
        return state

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key) -> bool:
        return key in self.idx

    # -- reading --------------------------------------------------------------------------
    def read_idx(self, key) -> bytes:
        """The record stored under ``key`` (payload with split parts merged)."""
        try:
            offset = self.idx[key]
        except KeyError:
            raise KeyError(f"{self.idx_path}: no key {key!r}") from None
        return self.read_at(offset, key)

    def read_at(self, offset: int, key=None) -> bytes:
        """The record whose first part starts at byte ``offset``."""
        return _read_record(self._buffer(), self.size, offset, self.rec_path, key)[0]


def _read_record(buf, size, offset, path, key=None):
    """(payload, next_offset) of the record at ``offset`` in ``buf``; checks every field."""
    parts = []
    pos = offset
    while True:
        if pos % 4:
            raise DataFormatError(path, "record offset is not a multiple of 4", pos, key)
        if pos + _HEAD.size > size:
            what = "record header" if not parts else "continuation part header"
            raise DataFormatError(
                path, f"truncated file: {what} needs 8 bytes, {max(size - pos, 0)} left", pos, key)
        magic, lrec = _HEAD.unpack_from(buf, pos)
        if magic != MAGIC:
            hint = " (does the idx point into the middle of a record?)" if not parts else ""
            raise DataFormatError(
                path, f"wrong magic 0x{magic:08x}, expected 0x{MAGIC:08x}{hint}", pos, key)
        cflag, length = lrec >> 29, lrec & _LENGTH_MASK
        if cflag > 3:
            raise DataFormatError(path, f"invalid continuation flag {cflag}", pos, key)
        if not parts and cflag in (2, 3):
            raise DataFormatError(
                path, f"record starts with a continuation part (cflag {cflag}): the idx points "
                "into the middle of a split record", pos, key)
        if parts and cflag in (0, 1):
            raise DataFormatError(
                path, f"split record broken: expected a continuation part (cflag 2 or 3), "
                f"found cflag {cflag}", pos, key)
        start = pos + _HEAD.size
        end = start + length
        padded = start + ((length + 3) & ~3)
        if padded > size:
            raise DataFormatError(
                path, f"truncated record: length field says {length} bytes, "
                f"{size - start} left in the file", pos, key)
        if cflag in (0, 3):
            # a corrupted length field shows as non-zero padding or no record header after it
            if buf[end:padded].strip(b"\0") or (
                    padded < size and buf[padded:padded + 4] != MAGIC_BYTES):
                raise DataFormatError(
                    path, f"length field {length} does not end the record: non-zero padding or "
                    f"no record header at offset {padded}", pos, key)
            if cflag == 0:
                return bytes(buf[start:end]), padded
            parts.append(buf[start:end])
            return MAGIC_BYTES.join(parts), padded
        parts.append(buf[start:end])
        pos = padded


def iter_records(rec_path):
    """Yield (offset, payload) for every record of a ``.rec`` in file order (no idx needed)."""
    rec_path = str(rec_path)
    if not os.path.isfile(rec_path):
        raise FileNotFoundError(f"{rec_path}: record file not found")
    size = os.path.getsize(rec_path)
    if size == 0:
        return
    with open(rec_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        pos = 0
        while pos < size:
            payload, nxt = _read_record(buf, size, pos, rec_path)
            yield pos, payload
            pos = nxt
