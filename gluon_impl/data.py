"""MXNet-Gluon adapters over the shared reader (common.face_dataset) and sampler (common.sampler).

Mirror of pytorch_impl/data.py: same classes, arguments and order. The datasets are
``common.data``'s with Gluon's ``Dataset`` as a second base; only the loader and the final
array type differ. Both backends receive bit-identical float32 N x 3 x H x W inputs and int64
labels.
"""

from __future__ import annotations

from mxnet import nd
from mxnet.gluon.data import DataLoader, Dataset

from common.data import EpochBatchesBase, FaceDatasetBase


class FaceDataset(FaceDatasetBase, Dataset):
    """``[i] -> (RGB uint8 HxWx3 numpy, int label)`` over a train.rec folder or .rec file."""


class EpochBatches(EpochBatchesBase, Dataset):
    """Item b = batch b of ``sampler.batches(epoch)``: (float32 N x 3 x H x W, int64 labels)."""


def _to_arrays(batch):
    data, labels = batch
    return nd.array(data, dtype=data.dtype), nd.array(labels, dtype=labels.dtype)


def _first(samples):
    # Gluon batches items; each item here is already a whole batch. Stays numpy so the worker
    # processes can send it back without shared-memory NDArrays.
    return samples[0]


def make_loader(dataset, sampler, epoch, num_workers=0):
    """Iterate (data, labels) NDArrays of one epoch, in the sampler's order.

    ``num_workers`` processes decode whole batches in parallel; the order stays the sampler's.
    """
    loader = DataLoader(EpochBatches(dataset, sampler, epoch), batch_size=1, shuffle=False,
                        num_workers=num_workers, batchify_fn=_first)
    return _Converted(loader)


class _Converted:
    """The Gluon loader with each numpy batch turned into NDArrays (keeps ``len``)."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return (_to_arrays(batch) for batch in self.loader)
