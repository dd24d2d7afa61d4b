"""common.recordio against mxnet.recordio, both directions, plus split records and bad bytes."""

from __future__ import annotations

import os
import pickle
import struct

import mxnet as mx
import numpy as np
import pytest

from common.recordio import (
    MAGIC_BYTES,
    DataFormatError,
    IRHeader,
    RecordReader,
    RecordWriter,
    iter_records,
    pack,
    unpack,
)


def payloads(seed=0, n=40):
    rng = np.random.default_rng(seed)
    out = [b"", b"a", b"abc", b"abcd", MAGIC_BYTES, MAGIC_BYTES * 3, b"xy" + MAGIC_BYTES + b"zw",
           b"abcd" + MAGIC_BYTES, MAGIC_BYTES + b"tail1", b"1234" + MAGIC_BYTES + b"5678" +
           MAGIC_BYTES + b"9"]
    for _ in range(n):
        body = bytearray(rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes())
        for _ in range(int(rng.integers(0, 4))):  # plant magic words, aligned or not
            at = int(rng.integers(0, len(body) + 1))
            body[at:at] = MAGIC_BYTES
        out.append(bytes(body))
    return out


def write_ours(tmp_path, records, keys=None):
    idx, rec = tmp_path / "ours.idx", tmp_path / "ours.rec"
    keys = keys if keys is not None else range(len(records))
    with RecordWriter(idx, rec) as w:
        for k, r in zip(keys, records):
            w.write_idx(k, r)
    return idx, rec


def test_files_we_write_read_identically_in_mxnet(tmp_path):
    records = payloads()
    keys = list(np.random.default_rng(1).permutation(len(records)) + 5)  # not in file order
    idx, rec = write_ours(tmp_path, records, keys)
    mxr = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
    assert sorted(mxr.keys) == sorted(int(k) for k in keys)
    for k, r in zip(keys, records):
        assert mxr.read_idx(int(k)) == r
    mxr.close()


def test_files_mxnet_writes_read_identically_here(tmp_path):
    records = payloads(seed=2)
    idx, rec = tmp_path / "mx.idx", tmp_path / "mx.rec"
    mxw = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
    for k, r in enumerate(records):
        mxw.write_idx(k, r)
    mxw.close()
    ours_idx, ours_rec = write_ours(tmp_path, records)
    assert rec.read_bytes() == ours_rec.read_bytes()  # byte-identical writer
    assert idx.read_bytes() == ours_idx.read_bytes()
    with RecordReader(idx, rec) as reader:
        assert reader.keys == list(range(len(records)))
        for k, r in enumerate(records):
            assert reader.read_idx(k) == r
    assert [p for _, p in iter_records(rec)] == records


def test_split_records_use_continuation_flags(tmp_path):
    payload = b"abcd" + MAGIC_BYTES + b"efgh" + MAGIC_BYTES + b"ij"
    idx, rec = write_ours(tmp_path, [payload])
    raw = rec.read_bytes()
    flags = []
    pos = 0
    while pos < len(raw):
        magic, lrec = struct.unpack_from("<II", raw, pos)
        assert magic == 0xCED7230A
        flags.append(lrec >> 29)
        pos += 8 + ((lrec & (2**29 - 1)) + 3) // 4 * 4
    assert flags == [1, 2, 3]
    with RecordReader(idx, rec) as r:
        assert r.read_idx(0) == payload


def test_pack_unpack_match_mxnet():
    cases = [IRHeader(0, 3.0, 7, 0), IRHeader(0, [1.0, 2.5, 7.0], 9, 2),
             IRHeader(0, np.array([4.0, 5.0], dtype=np.float32), 1, 1)]
    for h in cases:
        ours = pack(h, b"payload")
        theirs = mx.recordio.pack(mx.recordio.IRHeader(*h), b"payload")
        assert ours == theirs
        hu, pu = unpack(theirs)
        hm, pm = mx.recordio.unpack(theirs)
        assert pu == pm == b"payload"
        assert hu.flag == hm.flag and hu.id == hm.id and hu.id2 == hm.id2
        np.testing.assert_array_equal(np.asarray(hu.label), np.asarray(hm.label))


def test_unpack_rejects_short_records():
    with pytest.raises(ValueError, match="shorter than the IRHeader"):
        unpack(b"\0" * 10)
    with pytest.raises(ValueError, match="flag 1000"):
        unpack(struct.pack("<IfQQ", 1000, 0.0, 0, 0) + b"\0" * 8)


def test_reader_survives_fork_and_pickle(tmp_path):
    records = payloads(seed=3, n=5)
    idx, rec = write_ours(tmp_path, records)
    reader = RecordReader(idx, rec)
    assert reader.read_idx(1) == records[1]  # opened in this process
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.read_idx(2) == records[2]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the reader reopens itself and reads the same bytes
        os.close(r)
        ok = all(reader.read_idx(k) == records[k] for k in range(len(records)))
        os.write(w, b"1" if ok and reader._pid == os.getpid() else b"0")
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    reader.close()
    clone.close()


def corrupt(tmp_path, mutate):
    idx, rec = write_ours(tmp_path, [b"x" * 20, b"y" * 30, b"z" * 12])
    mutate(idx, rec)
    return idx, rec


def test_wrong_magic_names_file_and_offset(tmp_path):
    def mutate(idx, rec):
        raw = bytearray(rec.read_bytes())
        raw[28:32] = b"\0\0\0\0"  # second record's magic (first record is 8 + 20 bytes)
        rec.write_bytes(bytes(raw))

    idx, rec = corrupt(tmp_path, mutate)
    with RecordReader(idx, rec) as r, pytest.raises(DataFormatError) as err:
        r.read_idx(1)
    assert err.value.offset == 28 and err.value.key == 1 and "ours.rec" in str(err.value)
    assert "wrong magic" in str(err.value)


def test_truncated_record(tmp_path):
    idx, rec = corrupt(tmp_path, lambda idx, rec: rec.write_bytes(rec.read_bytes()[:-8]))
    with RecordReader(idx, rec) as r, pytest.raises(DataFormatError, match="truncated") as err:
        r.read_idx(2)
    assert err.value.offset == 68


def test_idx_offset_past_end(tmp_path):
    idx, rec = corrupt(tmp_path, lambda idx, rec: idx.write_text("0\t0\n1\t4000\n"))
    with pytest.raises(DataFormatError, match="past the end") as err:
        RecordReader(idx, rec)
    assert err.value.key == 1 and "ours.idx" in str(err.value)


def test_idx_pointing_mid_record(tmp_path):
    idx, rec = corrupt(tmp_path, lambda idx, rec: idx.write_text("0\t0\n1\t12\n"))
    with RecordReader(idx, rec) as r, pytest.raises(DataFormatError, match="middle") as err:
        r.read_idx(1)
    assert err.value.offset == 12
    idx.write_text("0\t0\n1\t13\n")
    with pytest.raises(DataFormatError, match="multiple of 4"):
        RecordReader(idx, rec)


def test_idx_pointing_at_a_continuation_part(tmp_path):
    idx, rec = write_ours(tmp_path, [b"abcd" + MAGIC_BYTES + b"efgh"])
    idx.write_text("0\t12\n")  # the cflag-3 part
    with RecordReader(idx, rec) as r, pytest.raises(DataFormatError, match="continuation"):
        r.read_idx(0)


def test_missing_and_malformed_idx(tmp_path):
    idx, rec = write_ours(tmp_path, [b"abc"])
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        RecordReader(tmp_path / "missing.idx", rec)
    idx.write_text("0 0\n")
    with pytest.raises(DataFormatError, match="line 1"):
        RecordReader(idx, rec)
    idx.write_text("0\t0\n0\t0\n")
    with pytest.raises(DataFormatError, match="duplicate key"):
        RecordReader(idx, rec)


def test_writer_rejects_duplicate_keys(tmp_path):
    with RecordWriter(tmp_path / "a.idx", tmp_path / "a.rec") as w:
        w.write_idx(3, b"x")
        with pytest.raises(ValueError, match="duplicate key 3"):
            w.write_idx(3, b"y")
