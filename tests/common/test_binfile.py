"""Verification .bin: round trip, InsightFace/Python 2 variants, restricted unpickler, errors."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
from datagen import face_image

from common.binfile import decode_bin, load_bin, write_bin
from common.images import encode_jpeg
from common.recordio import DataFormatError


def jpegs(n, size=(24, 24)):
    return [encode_jpeg(face_image(i // 2, i, size), 90) for i in range(n)]


def test_round_trip_and_decode(tmp_path):
    bins, same = jpegs(8), [True, False, True, False]
    write_bin(tmp_path / "v.bin", bins, same)
    got, issame = load_bin(tmp_path / "v.bin")
    assert got == bins and issame.dtype == np.bool_ and issame.tolist() == same
    images = decode_bin(tmp_path / "v.bin")
    assert images.shape == (8, 24, 24, 3) and images.dtype == np.uint8
    assert decode_bin(bins, image_size=32).shape == (8, 32, 32, 3)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_array_bins_any_protocol(tmp_path, protocol):
    bins = jpegs(4)
    arrays = [np.frombuffer(b, dtype=np.uint8).copy() for b in bins]
    (tmp_path / "np.bin").write_bytes(pickle.dumps((arrays, np.array([True, False])),
                                                   protocol=protocol))
    got, issame = load_bin(tmp_path / "np.bin")
    assert got == bins and issame.tolist() == [True, False]


def python2_pickle(bins, issame):
    """What Python 2's cPickle.dump(obj, f, 2) writes: str as SHORT_BINSTRING/BINSTRING."""
    out = [b"\x80\x02]q\x00("]
    for b in bins:
        out.append(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b))
                   + b)
    out.append(b"e]q\x01(")
    out += [b"\x88" if s else b"\x89" for s in issame]
    out.append(b"e\x86q\x02.")
    return b"".join(out)


def test_python2_pickle(tmp_path):
    bins = jpegs(4)
    (tmp_path / "py2.bin").write_bytes(python2_pickle(bins, [False, True]))
    got, issame = load_bin(tmp_path / "py2.bin")
    assert got == bins and issame.tolist() == [False, True]


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([Evil(marker), b"x"], [True])))
    with pytest.raises(DataFormatError, match="not allowed") as err:
        load_bin(tmp_path / "evil.bin")
    assert not marker.exists() and "evil.bin" in str(err.value)
    (tmp_path / "obj.bin").write_bytes(pickle.dumps(([np.array([b"a"], dtype=object)], [True])))
    with pytest.raises(DataFormatError, match="object dtype"):
        load_bin(tmp_path / "obj.bin")


def test_odd_count_and_length_mismatch(tmp_path):
    (tmp_path / "odd.bin").write_bytes(pickle.dumps((jpegs(3), [True])))
    with pytest.raises(DataFormatError, match="odd number of images"):
        load_bin(tmp_path / "odd.bin")
    (tmp_path / "mis.bin").write_bytes(pickle.dumps((jpegs(4), [True, False, True])))
    with pytest.raises(DataFormatError, match="issame_list has 3"):
        load_bin(tmp_path / "mis.bin")
    (tmp_path / "shape.bin").write_bytes(pickle.dumps([jpegs(2)]))
    with pytest.raises(DataFormatError, match="bins, issame_list"):
        load_bin(tmp_path / "shape.bin")
    with pytest.raises(ValueError, match="even number"):
        write_bin(tmp_path / "w.bin", jpegs(3), [True])


def test_huge_length_field_is_rejected_without_allocating(tmp_path):
    # BINBYTES8 claiming 2**40 bytes: must fail on the length check, not on a 1 TB malloc
    data = b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc"
    (tmp_path / "huge.bin").write_bytes(data)
    with pytest.raises(DataFormatError, match="huge.bin"):
        load_bin(tmp_path / "huge.bin")


def test_undecodable_bin_image_is_named(tmp_path):
    write_bin(tmp_path / "bad.bin", [jpegs(1)[0], b"garbage!"], [True])
    with pytest.raises(ValueError, match=r"bad.bin\[1\]: undecodable"):
        decode_bin(tmp_path / "bad.bin")
