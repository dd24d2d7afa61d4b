"""The final stage: each loss's paper default and its tuned configuration, retrained over seeds
in both backends on the whole training set and evaluated once, at the end, on the test pairs.

- Paper default: the loss at its class defaults (plus the settings fixed by ``--loss-args``)
  at the set's profile learning rate and weight decay; every loss of one seed shares one
  harness config, so its cells sit in ``<root>/default/seed<k>/<set>/cells/``.
- Tuned: the best complete trial of the loss's study (``bench.tune.study.best_point``), floats
  rounded to 4 significant digits (``rounded``: readable labels, and a change far below what
  the objective resolves), in ``<root>/tuned/<study name>/seed<k>/<set>/cells/``.

Each cell is a harness cell (``bench.run.harness``): both backends start from the same weights
and see the same batches, and the record keeps its commit, config and seed; a rerun skips
finished cells and resumes an interrupted one from its checkpoint in ``<runs>``. The harness
evaluates the test pairs after every epoch too (the training curves); nothing here reads those
numbers, the report uses each cell's final evaluation only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bench.report import results as res
from bench.run import loss_settings
from bench.run.config import HarnessConfig
from bench.tune.study import rounded
from common import search_space
from common.backends import BACKENDS

VARIANTS = ("default", "tuned")


@dataclass(frozen=True)
class Entry:
    """One loss of the final stage: its name, fixed settings, study and best point."""

    loss: str
    fixed: dict
    study: str  # the study name (the label of the fixed settings)
    point: dict | None  # the best trial's point; None: no complete trial (not retrained)

    @property
    def default_label(self) -> str:
        return loss_settings.label(self.loss, self.fixed)

    @property
    def final_point(self) -> dict | None:
        return None if self.point is None else rounded(self.point)

    @property
    def tuned_label(self) -> str | None:
        if self.point is None:
            return None
        _, settings = search_space.split(self.final_point)
        return loss_settings.label(self.loss, {**self.fixed, **settings})


@dataclass(frozen=True)
class Final:
    """Where the final cells go and the config they share (the set's profile, full data)."""

    base: HarnessConfig  # data: the full training folder with the test .bin; lr/wd: defaults
    root: Path  # results/tuning/<set>/final
    runs: Path  # runs/tuning/<set>/final
    models: Path  # models/tuning/<set>/final
    seeds: tuple

    def _place(self, cfg: HarnessConfig, sub: Path) -> HarnessConfig:
        return dataclasses.replace(cfg, results=str(self.root / sub), runs=str(self.runs / sub),
                                   models=str(self.models / sub), backends=BACKENDS,
                                   plots=False)

    def default_config(self, entries: list[Entry], seed: int) -> HarnessConfig:
        """One config for every loss's paper default at ``seed``."""
        # labels, not names + loss_args: two studies of one loss (``arcface`` and
        # ``arcface[scale=auto]``) are two cells of this one config
        cfg = dataclasses.replace(self.base, losses=tuple(e.default_label for e in entries),
                                  seed=seed, loss_args={})
        return self._place(cfg, Path("default") / f"seed{seed}")

    def tuned_config(self, entry: Entry, seed: int) -> HarnessConfig:
        """The config of ``entry``'s tuned point at ``seed``."""
        training, settings = search_space.split(entry.final_point)
        settings = {**entry.fixed, **settings}
        cfg = dataclasses.replace(self.base, losses=(entry.loss,), seed=seed,
                                  loss_args={entry.loss: settings} if settings else {},
                                  lr=float(training["lr"]),
                                  weight_decay=float(training["weight_decay"]))
        return self._place(cfg, Path("tuned") / res.loss_stem(entry.study) / f"seed{seed}")

    def configs(self, entries: list[Entry]) -> list[tuple[str, int, HarnessConfig]]:
        """(variant, seed, config) of every harness pass, seed by seed (a partial stage has
        every loss at the first seeds rather than a few losses at every seed)."""
        out = []
        for seed in self.seeds:
            if entries:
                out.append(("default", seed, self.default_config(entries, seed)))
            out += [("tuned", seed, self.tuned_config(e, seed)) for e in entries
                    if e.point is not None]
        return out


def run_final(final: Final, entries: list[Entry], run_harness, log=print) -> int:
    """Train every final cell (finished ones are skipped); returns the number that failed."""
    failed = 0
    for variant, seed, cfg in final.configs(entries):
        log(f"== final {variant} seed {seed}: {', '.join(cfg.losses)}")
        records = run_harness(cfg, log=log)
        failed += sum(r.get("status") != "ok" for r in records)
    return failed
