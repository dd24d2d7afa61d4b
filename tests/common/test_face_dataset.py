"""FaceRecordDataset over the InsightFace layout and plain im2rec files; bad input errors."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from datagen import write_rec

from common.face_dataset import FaceRecordDataset
from common.images import decode
from common.recordio import DataFormatError, IRHeader, RecordWriter, iter_records, pack, unpack


def test_insightface_layout_round_trip(tmp_path):
    encoded = write_rec(tmp_path)
    with FaceRecordDataset(tmp_path) as ds:
        assert ds.layout == "insightface" and len(ds) == 9 and ds.num_classes == 3
        assert ds.labels.dtype == np.int64
        assert ds.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
        assert ds.identity_indices == {0: [0, 1, 2], 1: [3, 4], 2: [5, 6, 7, 8]}
        flat = [b for group in encoded for b in group]
        for i in range(len(ds)):
            img, label = ds[i]
            assert img.dtype == np.uint8 and img.shape == (32, 32, 3)
            np.testing.assert_array_equal(img, decode(flat[i]))
            assert ds.read_raw(i)[1] == flat[i]
        # the header record is the first record in the file, as InsightFace writes it
        first = next(iter_records(tmp_path / "train.rec"))[1]
        assert unpack(first)[0].label.tolist() == [10.0, 13.0]


def test_mxnet_reads_our_insightface_header(tmp_path):
    write_rec(tmp_path)
    r = mx.recordio.MXIndexedRecordIO(str(tmp_path / "train.idx"), str(tmp_path / "train.rec"), "r")
    header, _ = mx.recordio.unpack(r.read_idx(0))
    assert header.flag == 2 and list(header.label) == [10.0, 13.0]
    ident, _ = mx.recordio.unpack(r.read_idx(12))
    assert list(ident.label) == [6.0, 10.0]
    img_header, payload = mx.recordio.unpack(r.read_idx(4))
    assert img_header.label == 1.0 and payload[:2] == b"\xff\xd8"


def test_plain_im2rec_file_written_by_mxnet(tmp_path):
    write_rec(tmp_path / "src")
    idx, rec = tmp_path / "plain.idx", tmp_path / "plain.rec"
    w = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
    with FaceRecordDataset(tmp_path / "src") as src:
        for i in range(len(src)):
            label = float(src.labels[i]) if i % 2 else [float(src.labels[i]), 7.0]  # both forms
            header = mx.recordio.IRHeader(0, label, i, 0)
            w.write_idx(i, mx.recordio.pack(header, src.read_raw(i)[1]))
        w.close()
        with FaceRecordDataset(rec) as ds:
            assert ds.layout == "im2rec" and ds.num_classes == 3
            np.testing.assert_array_equal(ds.labels, src.labels)
            np.testing.assert_array_equal(ds[4][0], src[4][0])


def test_cache_and_resize(tmp_path):
    write_rec(tmp_path)
    with FaceRecordDataset(tmp_path, image_size=48, cache=True) as ds:
        first = ds[3][0]
        assert first.shape == (48, 48, 3)
        ds.reader.read_idx = None  # a cached image must not touch the file again
        assert ds[3][0] is first


def test_missing_files_are_named(tmp_path):
    write_rec(tmp_path)
    (tmp_path / "property").unlink()
    with pytest.raises(FileNotFoundError, match="property"):
        FaceRecordDataset(tmp_path)
    (tmp_path / "train.idx").unlink()
    with pytest.raises(FileNotFoundError, match="train.idx"):
        FaceRecordDataset(tmp_path / "train.rec")


def custom_rec(tmp_path, records):
    with RecordWriter(tmp_path / "train.idx", tmp_path / "train.rec") as w:
        for key, rec in records:
            w.write_idx(key, rec)
    (tmp_path / "property").write_text("2,32,32\n")
    return tmp_path


def test_empty_identity(tmp_path):
    jpg = write_rec(tmp_path / "src", (1,))[0][0]
    custom_rec(tmp_path, [(0, pack(IRHeader(2, [2, 4], 0, 0), b"")),
                          (1, pack(IRHeader(0, 0.0, 1, 0), jpg)),
                          (2, pack(IRHeader(2, [1, 2], 2, 0), b"")),
                          (3, pack(IRHeader(2, [2, 2], 3, 0), b""))])
    with pytest.raises(DataFormatError, match="empty identity") as err:
        FaceRecordDataset(tmp_path)
    assert err.value.key == 3 and "train.rec" in str(err.value)


def test_undecodable_image_names_key_and_offset(tmp_path):
    custom_rec(tmp_path, [(0, pack(IRHeader(2, [2, 3], 0, 0), b"")),
                          (1, pack(IRHeader(0, 0.0, 1, 0), b"not an image at all")),
                          (2, pack(IRHeader(2, [1, 2], 2, 0), b""))])
    with FaceRecordDataset(tmp_path) as ds:
        with pytest.raises(ValueError, match=r"undecodable image") as err:
            ds[0]
        assert "key 1" in str(err.value) and "offset 40" in str(err.value)


def test_label_disagreeing_with_identity_record(tmp_path):
    jpg = write_rec(tmp_path / "src", (1,))[0][0]
    custom_rec(tmp_path, [(0, pack(IRHeader(2, [3, 4], 0, 0), b"")),
                          (1, pack(IRHeader(0, 1.0, 1, 0), jpg)),
                          (2, pack(IRHeader(0, 0.0, 2, 0), jpg)),
                          (3, pack(IRHeader(2, [1, 3], 3, 0), b""))])
    with FaceRecordDataset(tmp_path) as ds:
        with pytest.raises(DataFormatError, match="disagrees") as err:
            ds.read_raw(1)
        assert err.value.key == 2


def test_property_smaller_than_labels(tmp_path):
    write_rec(tmp_path)
    (tmp_path / "property").write_text("2,32,32\n")
    with pytest.raises(DataFormatError, match="num_classes 2"):
        FaceRecordDataset(tmp_path)
    (tmp_path / "property").write_text("three,32,32\n")
    with pytest.raises(DataFormatError, match="num_classes,height,width"):
        FaceRecordDataset(tmp_path)
