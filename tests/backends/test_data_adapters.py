"""The torch and gluon adapters deliver bit-identical batches in the sampler's order."""

from __future__ import annotations

from contextlib import ExitStack, closing

import numpy as np
from datagen import write_rec

from common.face_dataset import FaceRecordDataset
from common.images import make_batch
from common.sampler import EpochSampler
from gluon_impl import data as gdata
from pytorch_impl import data as tdata


def test_same_class_names_and_signatures():
    import inspect

    for name in ("FaceDataset", "EpochBatches", "make_loader"):
        assert inspect.signature(getattr(tdata, name)) == inspect.signature(getattr(gdata, name))


def test_backends_get_identical_batches(tmp_path):
    write_rec(tmp_path, counts=(4, 3, 5, 4))
    with ExitStack() as opened:
        ref = opened.enter_context(closing(FaceRecordDataset(tmp_path)))
        tds = opened.enter_context(closing(tdata.FaceDataset(tmp_path)))
        gds = opened.enter_context(closing(gdata.FaceDataset(tmp_path)))
        _check_identical_batches(ref, tds, gds)


def _check_identical_batches(ref, tds, gds):
    sampler = EpochSampler(ref.labels, 4, seed=5)
    assert tds.num_classes == gds.num_classes == 4
    torch_batches = [(d.numpy(), y.numpy()) for d, y in tdata.make_loader(tds, sampler, 1)]
    torch_workers = [(d.numpy(), y.numpy())
                     for d, y in tdata.make_loader(tds, sampler, 1, num_workers=2)]
    gluon_batches = [(d.asnumpy(), y.asnumpy()) for d, y in gdata.make_loader(gds, sampler, 1)]
    gluon_workers = [(d.asnumpy(), y.asnumpy())
                     for d, y in gdata.make_loader(gds, sampler, 1, num_workers=1)]
    expected = list(sampler.batches(1))
    assert len(torch_batches) == len(gluon_batches) == len(expected) == 4
    for (idx, flips), t, tw, g, gw in zip(expected, torch_batches, torch_workers, gluon_batches,
                                          gluon_workers):
        want = make_batch([ref[int(i)][0] for i in idx], flips)
        assert t[0].dtype == np.float32 and t[0].shape == (4, 3, 32, 32)
        for data, labels in (t, tw, g, gw):
            np.testing.assert_array_equal(data, want)  # bit-identical
            np.testing.assert_array_equal(labels, ref.labels[idx])
    # a flipped sample really is mirrored
    idx, flips = expected[0]
    if flips.any():
        j = int(np.flatnonzero(flips)[0])
        np.testing.assert_array_equal(torch_batches[0][0][j], want_flip(ref, idx[j]))


def want_flip(ref, i):
    return make_batch([ref[int(i)][0][:, ::-1]])[0]
