"""Seeded mutation (fuzz) test of the readers: .rec, .idx and verification .bin.

Mutations: truncation, byte flips, random and huge length fields, wrong idx offsets (random,
unaligned, past the end, another record's), garbage idx lines, random pickle bytes/lengths and
forbidden globals in a .bin. Every case must end in the documented error (``ValueError`` /
``DataFormatError`` naming the file, or ``FileNotFoundError``) or in correct data. RecordIO and
pickle carry no checksum, so a flipped byte inside one record's bytes (or one .bin element) may
change that record only; every other record must read back exactly. The cases run in a child
process under an address-space limit and a timeout: a hang, an interpreter crash or a
multi-GB allocation fails the test.
"""

from __future__ import annotations

import pickletools
import resource
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]  # tests/, where datagen.py is
MEMORY_LIMIT = 3 << 30  # bytes of address space for the child


def build(folder: Path):
    """A small InsightFace set whose records include split (magic-bearing) payloads + a .bin."""
    from datagen import write_rec

    from common.binfile import write_bin
    from common.recordio import MAGIC_BYTES, IRHeader, RecordWriter, pack

    write_rec(folder / "ds", counts=(3, 2, 3), size=16)
    payloads = [bytes(np.random.default_rng(i).integers(0, 256, 40 + 13 * i, dtype=np.uint8))
                + (MAGIC_BYTES * (i % 3)) + b"end" for i in range(12)]
    with RecordWriter(folder / "raw.idx", folder / "raw.rec") as w:
        for k, p in enumerate(payloads):
            w.write_idx(k, pack(IRHeader(0, float(k), k, 0), p))
    bins = [bytes(np.random.default_rng(100 + i).integers(0, 256, 30, dtype=np.uint8))
            for i in range(8)]
    write_bin(folder / "v.bin", bins, [True, False, True, False])
    return payloads, bins


def read_raw(folder):
    from common.recordio import RecordReader

    with RecordReader(folder / "raw.idx", folder / "raw.rec") as r:
        out = {}
        for k in r.keys:
            try:
                out[k] = r.read_idx(k)
            except ValueError as exc:
                out[k] = exc
        return out


def check_error(exc, names, located=True):
    from common.recordio import DataFormatError

    assert isinstance(exc, (ValueError, FileNotFoundError)), f"undocumented {exc!r}"
    assert any(n in str(exc) for n in names), f"error does not name the file: {exc}"
    if located and isinstance(exc, DataFormatError) and "line" not in str(exc):
        assert exc.offset is not None or exc.key is not None, f"no offset/key: {exc}"


def record_spans(rec_bytes):
    """[(start, end)] byte span (headers + payload + padding) of each record, in file order."""
    spans, pos = [], 0
    while pos < len(rec_bytes):
        start = pos
        while True:
            _, lrec = struct.unpack_from("<II", rec_bytes, pos)
            pos += 8 + (((lrec & (2**29 - 1)) + 3) & ~3)
            if lrec >> 29 in (0, 3):
                break
        spans.append((start, pos))
    return spans


def fuzz_rec(folder, rng, original, cases):
    from common.recordio import pack, unpack  # noqa: F401

    rec, idx = folder / "raw.rec", folder / "raw.idx"
    clean_rec, clean_idx = rec.read_bytes(), idx.read_text()
    spans = record_spans(clean_rec)
    offsets = [int(line.split("\t")[1]) for line in clean_idx.splitlines()]
    for case in range(cases):
        data, text = bytearray(clean_rec), clean_idx
        kind = case % 7
        touched = set()  # keys whose own bytes changed: these may read differently
        if kind == 0:  # truncate
            cut = int(rng.integers(0, len(data)))
            data = data[:cut]
            touched = {k for k, (s, e) in enumerate(spans) if e > cut}
        elif kind == 1:  # flip bytes anywhere
            for _ in range(int(rng.integers(1, 4))):
                at = int(rng.integers(0, len(data)))
                data[at] ^= 1 << int(rng.integers(0, 8))
                touched |= {k for k, (s, e) in enumerate(spans) if s <= at < e}
        elif kind in (2, 3):  # nearby / huge length field of one record
            k = int(rng.integers(len(spans)))
            lrec = struct.unpack_from("<I", data, spans[k][0] + 4)[0]
            near = max(0, (lrec & (2**29 - 1)) + int(rng.integers(-64, 65)))  # plausible lengths
            value = near if kind == 2 else 2**29 - 1 - int(rng.integers(8))
            struct.pack_into("<I", data, spans[k][0] + 4, (lrec >> 29 << 29) | value)
            # a length that ends inside the padding is undetectable; any other must be refused
            touched = {k} if abs(value - (lrec & (2**29 - 1))) < 4 else set()
        elif kind == 4:  # wrong idx offset: random, unaligned, past the end, another record's
            lines = text.splitlines()
            k = int(rng.integers(len(lines)))
            choice = int(rng.integers(4))
            off = [int(rng.integers(0, len(data))), offsets[k] + int(rng.integers(1, 4)),
                   len(data) + int(rng.integers(0, 10**9)), offsets[(k + 1) % len(offsets)]][choice]
            lines[k] = f"{k}\t{off}"
            text = "\n".join(lines) + "\n"
        elif kind == 5:  # garbage idx line
            lines = text.splitlines()
            k = int(rng.integers(len(lines)))
            junk = bytes(rng.integers(32, 127, int(rng.integers(0, 12)), dtype=np.uint8))
            lines[k] = junk.decode()
            text = "\n".join(lines) + "\n"
        else:  # huge numbers in the idx
            lines = text.splitlines()
            k = int(rng.integers(len(lines)))
            lines[k] = f"{k}\t{int(rng.integers(1, 2**62)) * 4}"
            text = "\n".join(lines) + "\n"
        rec.write_bytes(bytes(data))
        idx.write_text(text)
        try:
            got = read_raw(folder)
        except ValueError as exc:  # refused at open (idx checks)
            check_error(exc, ["raw.idx", "raw.rec"])
            continue
        for k, value in got.items():
            if isinstance(value, Exception):
                check_error(value, ["raw.rec", "raw.idx"])
            elif k not in touched:
                assert value == original[k], f"case {case} kind {kind}: key {k} silently wrong"
    rec.write_bytes(clean_rec)
    idx.write_text(clean_idx)


def fuzz_dataset(folder, rng, cases):
    from common.face_dataset import FaceRecordDataset

    ds_dir = folder / "ds"
    clean = (ds_dir / "train.rec").read_bytes()
    reference = FaceRecordDataset(ds_dir)
    want = [reference[i] for i in range(len(reference))]
    spans = record_spans(clean)
    for _ in range(cases):
        data = bytearray(clean)
        at = int(rng.integers(0, len(data)))
        data[at] ^= 1 << int(rng.integers(0, 8))
        touched = next(k for k, (s, e) in enumerate(spans) if s <= at < e)
        (ds_dir / "train.rec").write_bytes(bytes(data))
        try:
            ds = FaceRecordDataset(ds_dir)
        except ValueError as exc:
            check_error(exc, ["train.rec", "train.idx", "property"])
            continue
        for i in range(len(ds)):
            try:
                img, label = ds[i]
            except ValueError as exc:
                check_error(exc, ["train.rec"])
                continue
            if int(ds.keys[i]) != touched:  # key k is record k in this file
                assert label == want[i][1] and np.array_equal(img, want[i][0])
    (ds_dir / "train.rec").write_bytes(clean)


def fuzz_bin(folder, rng, bins, cases):
    from common.binfile import load_bin

    path = folder / "v.bin"
    clean = path.read_bytes()
    issame = [True, False, True, False]
    for case in range(cases):
        kind = case % 5
        data = bytearray(clean)
        flips = 0
        if kind == 0:
            data = data[:int(rng.integers(0, len(data)))]
        elif kind == 1:
            flips = int(rng.integers(1, 3))
            for _ in range(flips):
                data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        elif kind == 2:  # random or huge length after a bytes opcode
            ops = [pos for op, _, pos in pickletools.genops(clean)
                   if op.name in ("SHORT_BINBYTES", "BINBYTES", "BINBYTES8")]
            at = ops[int(rng.integers(len(ops)))]
            width = {0x42: 4, 0x43: 1, 0x8E: 8}[data[at]]
            big = int(rng.integers(0, 2**(8 * width) - 1, dtype=np.uint64)) | (1 << (8 * width - 2))
            data[at + 1:at + 1 + width] = big.to_bytes(width, "little")
        elif kind == 3:  # random bytes after the protocol header
            data = data[:2] + bytearray(rng.integers(0, 256, int(rng.integers(1, 200)),
                                                      dtype=np.uint8).tobytes())
        else:  # forbidden globals
            module = [b"os", b"builtins", b"subprocess", b"numpy"][int(rng.integers(4))]
            data = bytearray(b"\x80\x02c" + module + b"\nsystem\nq\x00X\x04\x00\x00\x00truep\x01"
                             b"\x85R.")
        path.write_bytes(bytes(data))
        try:
            got, same = load_bin(path)
        except ValueError as exc:
            check_error(exc, ["v.bin"], located=False)  # .bin errors name the file and item
            continue
        wrong = sum(a != b for a, b in zip(got, bins)) + int((same != issame).sum())
        assert len(got) == 8 and wrong <= flips, (
            f"case {case}: silently wrong .bin: {len(got)} images, {wrong} differ, {same}")
    path.write_bytes(clean)


def fuzz_all(folder, seed=0, cases=140):
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    payloads, bins = build(folder)
    from common.recordio import pack, IRHeader  # noqa: I001

    original = {k: pack(IRHeader(0, float(k), k, 0), p) for k, p in enumerate(payloads)}
    fuzz_rec(folder, rng, original, cases)
    fuzz_dataset(folder, rng, cases // 2)
    fuzz_bin(folder, rng, bins, cases)
    print("fuzz ok")


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def test_fuzz_readers(tmp_path):
    code = (f"import sys; sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]; import runpy; "
            f"runpy.run_path({__file__!r})['fuzz_all']({str(tmp_path)!r})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, preexec_fn=_limit_memory, cwd=HERE.parent)
    assert out.returncode == 0, f"rc {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    assert "fuzz ok" in out.stdout
