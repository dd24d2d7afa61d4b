"""PyTorch adapters over the shared reader (common.face_dataset) and sampler (common.sampler).

Mirror of gluon_impl/data.py: same classes, arguments and order. The datasets are
``common.data``'s with torch's ``Dataset`` as a second base; only the loader and the final
array type differ. Both backends receive bit-identical float32 N x 3 x H x W inputs and int64
labels.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from common.data import EpochBatchesBase, FaceDatasetBase


class FaceDataset(FaceDatasetBase, Dataset):
    """``[i] -> (RGB uint8 HxWx3 numpy, int label)`` over a train.rec folder or .rec file."""


class EpochBatches(EpochBatchesBase, Dataset):
    """Item b = batch b of ``sampler.batches(epoch)``: (float32 N x 3 x H x W, int64 labels)."""


def _to_arrays(batch):
    data, labels = batch
    return torch.from_numpy(data), torch.from_numpy(labels)


def make_loader(dataset, sampler, epoch, num_workers=0):
    """Iterate (data, labels) torch tensors of one epoch, in the sampler's order.

    ``num_workers`` processes decode whole batches in parallel; the order stays the sampler's.
    """
    return DataLoader(EpochBatches(dataset, sampler, epoch), batch_size=None, shuffle=False,
                      num_workers=num_workers, collate_fn=_to_arrays)
