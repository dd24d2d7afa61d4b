"""The framework-free half of the backends' data adapters (``pytorch_impl/data.py``,
``gluon_impl/data.py``): each backend's ``FaceDataset`` and ``EpochBatches`` are these classes
with the framework's ``Dataset`` as a second base, so both hold the very same logic and both
receive bit-identical float32 N x 3 x H x W batches (``common.images.make_batch``).
"""

from __future__ import annotations

import numpy as np

from common.face_dataset import FaceRecordDataset
from common.images import make_batch


class FaceDatasetBase:
    """``[i] -> (RGB uint8 HxWx3 numpy, int label)`` over a train.rec folder or .rec file."""

    def __init__(self, path, image_size=None, cache=False):
        self.records = FaceRecordDataset(path, image_size=image_size, cache=cache)
        self.labels = self.records.labels
        self.num_classes = self.records.num_classes

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def close(self) -> None:
        """Close the record file."""
        self.records.close()


class EpochBatchesBase:
    """Item b = batch b of ``sampler.batches(epoch)``: (float32 N x 3 x H x W, int64 labels)."""

    def __init__(self, dataset, sampler, epoch):
        self.dataset = dataset
        self.batches = list(sampler.batches(epoch))

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, b):
        indices, flips = self.batches[b]
        images = [self.dataset[int(i)][0] for i in indices]
        return make_batch(images, flips), np.asarray(self.dataset.labels)[indices]
