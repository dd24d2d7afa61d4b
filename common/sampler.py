"""One seeded sampler for both backends: epoch order, batch composition and flip decisions.

Everything is drawn from ``numpy.random.default_rng([seed, epoch])``, so the batches of epoch
``e`` depend on (labels, batch_size, seed, pk, epoch) only: a run resumed at epoch ``e`` sees
the same batches, and the PyTorch and Gluon runs see the same images in the same order.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class EpochSampler:
    """Seeded batches of sample indices, with a horizontal-flip flag per sample.

    Plain mode: a permutation of all samples cut into batches of ``batch_size``.
    ``pk=K`` (triplet/contrastive): each batch holds ``P = batch_size // K`` distinct identities
    with K images each. Every identity's images are shuffled and cut into groups of K (the last
    group topped up by drawing again from that identity, so identities with fewer than K images
    repeat images); the groups are shuffled and packed greedily so that no identity appears
    twice in a batch (only if the remaining groups cannot be made distinct does a batch repeat
    an identity). ``drop_last`` drops the incomplete final batch. ``flip`` draws a 50% flip per
    sample; ``flip=False`` gives all-False flags.
    """

    def __init__(self, labels, batch_size: int, seed: int, pk: int | None = None,
                 drop_last: bool = True, flip: bool = True):
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.ndim != 1 or len(self.labels) == 0:
            raise ValueError(f"labels must be a non-empty 1-D array, got shape {self.labels.shape}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.flip = bool(flip)
        self.pk = None if pk is None else int(pk)
        if self.pk is not None:
            if self.pk < 2 or self.batch_size % self.pk:
                raise ValueError(
                    f"pk must be >= 2 and divide batch_size ({self.batch_size}), got {pk}")
            self._groups_of = {}
            for i, label in enumerate(self.labels.tolist()):
                self._groups_of.setdefault(label, []).append(i)
            self._identities = sorted(self._groups_of)
        elif self.drop_last and len(self.labels) < self.batch_size:
            raise ValueError(f"batch_size must be <= the number of samples ({len(self.labels)}) "
                             f"with drop_last, got {self.batch_size}")

    def _num_samples(self) -> int:
        if self.pk is None:
            return len(self.labels)
        k = self.pk
        return k * sum(-(-len(v) // k) for v in self._groups_of.values())

    def __len__(self) -> int:
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batches(self, epoch: int):
        """Yield ``(indices int64[B], flips bool[B])`` for ``epoch``."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        rng = np.random.default_rng([self.seed, int(epoch)])
        order = self._pk_order(rng) if self.pk is not None else rng.permutation(len(self.labels))
        flips = rng.random(len(order)) < 0.5 if self.flip else np.zeros(len(order), dtype=bool)
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield order[sl].astype(np.int64), flips[sl]

    def _pk_order(self, rng) -> np.ndarray:
        k, p = self.pk, self.batch_size // self.pk
        groups = []
        for label in self._identities:
            members = np.asarray(self._groups_of[label], dtype=np.int64)
            members = members[rng.permutation(len(members))]
            short = -len(members) % k
            if short:
                members = np.concatenate([members, rng.choice(members, short)])
            groups += [(label, members[j:j + k]) for j in range(0, len(members), k)]
        pending = deque(groups[j] for j in rng.permutation(len(groups)))
        out = []
        while pending:
            chosen, seen, deferred = [], set(), []
            while pending and len(chosen) < p:
                g = pending.popleft()
                (deferred if g[0] in seen else chosen).append(g)
                seen.add(g[0])
            while deferred and len(chosen) < p:  # cannot be made distinct: accept a repeat
                chosen.append(deferred.pop(0))
            pending.extendleft(reversed(deferred))
            out += [g[1] for g in chosen]
        return np.concatenate(out)


class StepBudget:
    """The first ``steps`` batches of a sampler's seeded epochs, presented as one epoch.

    A training budget counted in SGD steps rather than passes over the data (the regime study
    compares 100 and 4,000 identities at the same number of steps): batch ``g`` of the budget
    is batch ``g mod len(sampler)`` of the sampler's epoch ``g // len(sampler)``, so the batches
    are those of an epoch-counted run cut at ``steps``, and a resumed run sees the same ones.
    Works over any sampler with ``len`` and ``batches(epoch)`` (also the multi-process one).
    """

    def __init__(self, sampler, steps: int):
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if len(sampler) < 1:
            raise ValueError("StepBudget: the sampler yields no batch per epoch")
        self.sampler, self.steps = sampler, int(steps)

    def __len__(self) -> int:
        return self.steps

    def batches(self, epoch: int):
        """Yield the budget's ``steps`` batches; ``epoch`` must be 0 (the budget is one epoch)."""
        if epoch != 0:
            raise ValueError(f"StepBudget has a single epoch (0), got {epoch}")
        done, data_epoch = 0, 0
        while done < self.steps:
            for batch in self.sampler.batches(data_epoch):
                yield batch
                done += 1
                if done == self.steps:
                    return
            data_epoch += 1
