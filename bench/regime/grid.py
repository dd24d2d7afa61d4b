"""The regime study's grid: identities x training budget x scale rule x loss x backend x seed.

Where does a margin loss pay off over softmax? The literature's answer (ArcFace > CosFace >
SphereFace > softmax) comes from long training on many identities at a scale suited to the
class count; the suite's short default runs sit at the other corner. The grid spans it on the
synthetic generator, where the identity count is a knob:

- identities: one synthetic set per count (``data/regime/ids<N>``), ``IMAGES_PER_IDENTITY``
  images each, verified on ``PAIRS`` pairs of ``HELDOUT`` identities never trained on;
- budget: SGD steps of batch ``BATCH`` (``HarnessConfig.steps``: the same step count is one
  pass over 1,000 identities and many over 100), each budget its own run with its own cosine
  schedule and a warm-up of ``WARMUP_FRACTION`` of the budget;
- scale rule: every loss with a scale trains at the paper's ``s`` (the class default) and at
  ``scale="auto"`` (AdaCos' fixed scale for the class count, SPEC section 1); softmax and
  SphereFace have no scale and train once;
- seeds: initial weights and batch order; the two backends of a seed start from the same
  weights and see the same batches, and all losses of a seed share the batches, so every
  difference to softmax is paired by seed.

A grid point (identities, steps, seed) is one harness run into its own results folder
(``RESULTS/regime/cells/steps<S>/seed<k>/ids<N>/cells/``): the harness's cells, resumable one
by one, each keeping its commit, config and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOSSES = ("softmax", "normface", "sphereface", "cosface", "arcface", "curricularface", "adaface")
IDENTITIES = (100, 1000, 4000)
STEPS = (100, 300, 1000)
SEEDS = (0, 1, 2)
RULES = ("paper", "auto")
REFERENCE = "softmax"

IMAGES_PER_IDENTITY = 10
HELDOUT = 200
PAIRS = 2000
DIFFICULTY = 1.0
GENERATED_SIZE = 48  # rendered at this side; the harness trains at IMAGE_SIZE
IMAGE_SIZE = 32
BATCH = 64
WARMUP_FRACTION = 0.05
# smallcnn at 32 px, width 8, embedding 128: about 60 PyTorch and 45 Gluon steps/s on one core
BACKBONE = {"backbone": "smallcnn", "backbone_kwargs": {"width": 8}, "embedding_size": 128}


@dataclass(frozen=True)
class Point:
    """One harness run of the grid: every loss label x backend at (identities, steps, seed)."""

    identities: int
    steps: int
    seed: int

    @property
    def name(self) -> str:
        return f"ids{self.identities}/steps{self.steps}/seed{self.seed}"


def labels(losses, rules) -> list[str]:
    """The loss labels of the grid: each loss at each scale rule it takes (``arcface``,
    ``arcface[scale=auto]``); a loss without an ``"auto"`` scale once."""
    from bench.run.loss_settings import label
    from common import manifest

    out = []
    for loss in losses:
        takes_auto = "scale" in manifest.auto_keys(loss)
        for rule in rules if takes_auto else ("paper",):
            out.append(label(loss, {"scale": "auto"} if rule == "auto" else {}))
    return list(dict.fromkeys(out))


def points(identities, steps, seeds) -> list[Point]:
    """Every grid point, seed-major: seed 0 of the whole grid comes first, so an interrupted
    study has covered every (identities, steps) before it adds seeds."""
    return [Point(n, s, k) for k in seeds for n in identities for s in steps]


def part_of(pts: list[Point], part: tuple[int, int]) -> list[Point]:
    """Part ``i`` of ``n`` (1-based), round-robin over the cost-sorted points, so that ``n``
    processes started with ``--part 1/n`` ... ``n/n`` share the grid about evenly."""
    i, n = part
    by_cost = sorted(pts, key=lambda p: (-p.steps, p.seed, p.identities))
    mine = set(by_cost[i - 1::n])
    return [p for p in pts if p in mine]


def data_dir(root: Path, identities: int) -> Path:
    return Path(root) / f"ids{identities}"


def synthetic_spec(identities: int, difficulty: float = DIFFICULTY) -> dict:
    """The ``common.synthetic.generate`` arguments of one identity count's set."""
    return {"num_identities": identities, "images_per_identity": IMAGES_PER_IDENTITY,
            "heldout_identities": HELDOUT, "num_pairs": PAIRS, "image_size": GENERATED_SIZE,
            "difficulty": difficulty, "seed": 0}


def cells_root(results: Path, point: Point) -> Path:
    """The harness's results root of a point (the harness appends the data folder name)."""
    return Path(results) / "cells" / f"steps{point.steps}" / f"seed{point.seed}"


def harness_config(point: Point, data: Path, results: Path, runs: str, models: Path,
                   grid_labels, backends, progress: bool, command: str, lr: float = 0.1):
    """The ``HarnessConfig`` of one grid point."""
    from bench.run.config import HarnessConfig

    images = point.identities * IMAGES_PER_IDENTITY
    return HarnessConfig(
        data=str(data), results=str(cells_root(results, point)), runs=runs,
        models=str(Path(models) / f"steps{point.steps}" / f"seed{point.seed}"),
        losses=tuple(grid_labels), backends=tuple(backends), image_size=IMAGE_SIZE,
        steps=point.steps, batch_size=BATCH, lr=lr, schedule="cosine",
        # a warm-up of WARMUP_FRACTION of the budget, in passes over this set's images
        warmup_epochs=round(WARMUP_FRACTION * point.steps * BATCH / images, 6),
        seed=point.seed, flip_test=False, progress=progress, plots=False, command=command,
        **BACKBONE)
