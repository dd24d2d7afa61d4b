"""One seeded Optuna study per loss, an equal budget each, recorded in one SQLite file.

Reality-Check style (Musgrave, Belongie, Lim, "A Metric Learning Reality Check", ECCV 2020):
every loss gets the same number of trials over its own search space
(``common.search_space``: learning rate, weight decay and the loss's hyper-parameters), the
objective is verification accuracy on the validation split carved out of the training
identities (``bench.tune.split``), and the test pairs are never seen while tuning.

- Storage: ``results/tuning/<set>/studies.sqlite`` (Optuna's RDB storage; ``optuna-dashboard
  sqlite:///results/tuning/<set>/studies.sqlite`` opens it), one study per loss label
  (``arcface``, or ``arcface[scale=auto]`` when ``--loss-args`` fixes a setting, which is then
  left out of the search), direction maximise.
- A trial: the trial's point goes into a ``HarnessConfig`` on the validation folder, one
  backend, a fixed seed; ``bench.run.harness.run`` trains the one cell into its own folder
  (``<runs>/<loss>/trial<N>/``) and the trial's value is the cell's 10-fold accuracy on
  ``val.bin``. A cell that ends non-finite or with an error is a failed trial: recorded, and it
  counts toward the budget.
- Sampler: ``TPESampler(seed=...)``, built afresh before each trial with the seed
  ``sampler_seed * 1_000_003 + trial number``, so the proposals are a function of the seed and
  of the finished trials only: a study run in several sittings proposes what one sitting would.
  Every loss's study has the same seeds, so during TPE's random start (the first
  ``startup_trials``) trial k proposes the same lr and weight decay to every loss (common random
  numbers: the losses are compared at the same training settings there).
- Budget and resume: the study runs until it has ``budget`` finished trials (complete +
  failed). A trial interrupted by an exception (Ctrl-C included) is marked failed and listed in
  the study's ``interrupted`` attribute, which does not count toward the budget, and its point
  is enqueued again (user attribute ``redo_of``), so the redo trains the same configuration in
  the same folder, resuming the cell from its last epoch checkpoint. A trial left RUNNING by a
  process that died (kill -9, power loss) is treated the same way when the study is next
  opened; RUNNING trials of a live process (or of another host) are left alone and count as
  under way.
- Records: study user attributes ``protocol`` (loss, fixed settings, the space, the split, the
  trial config, backend, sampler; a study reopened with another protocol is refused),
  ``budget``, ``command``, ``interrupted``; trial user attributes ``label``, ``folder``,
  ``status``, ``message``, ``val_acc_std``, ``wall_s``, ``commit``, ``host``, ``pid``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report import results as res
from bench.run import loss_settings
from bench.run.config import HarnessConfig, hashed
from bench.tune.split import VAL_BIN
from common import search_space

STUDY_FILE = "studies.sqlite"
OBJECTIVE = "10-fold verification accuracy on the validation split's val.bin (maximise)"
SEARCHED = ("lr", "weight_decay", "loss_args")  # replaced per trial: not part of the protocol
VAL_TARGET = Path(VAL_BIN).stem
SEED_STRIDE = 1_000_003


def study_name(loss: str, fixed: dict) -> str:
    """A study's name: the loss label of its fixed settings (``arcface[scale=auto]``)."""
    return loss_settings.label(loss, fixed)


def storage_url(path: Path) -> str:
    """The SQLAlchemy URL of the study file (absolute: independent of the working folder)."""
    return f"sqlite:///{Path(path).resolve()}"


def open_storage(path: Path):
    """Optuna's RDB storage on ``path`` (created with its folder when missing)."""
    import optuna

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(storage_url(path),
                                      engine_kwargs={"connect_args": {"timeout": 60}})


def quiet_optuna() -> None:
    """Optuna logs each trial at INFO; the bench prints its own lines."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Tuning:
    """One loss's study: what decides it (``protocol``) and where its trials train."""

    loss: str  # registered name
    fixed: dict  # the loss's settings fixed by --loss-args, left out of the search
    base: HarnessConfig  # the trial config: validation folder, one backend, fixed seed
    trial_root: Path  # trial N trains in trial_root/<loss stem>/trial<N>/
    split: dict  # the validation split's record (bench.tune.split.summary)
    sampler_seed: int = 0
    startup_trials: int = 10  # TPE's random start (Optuna's default)

    @property
    def name(self) -> str:
        return study_name(self.loss, self.fixed)

    def protocol(self) -> dict:
        """Everything that decides the study's trials but the searched point (JSON form)."""
        config = {k: v for k, v in hashed(self.base).items() if k not in SEARCHED}
        return json.loads(json.dumps({
            "loss": self.loss, "fixed": self.fixed,
            "space": search_space.describe(self.loss, self.fixed),
            "objective": OBJECTIVE, "config": config,
            # the split as recorded, less the source's path (its files' sizes and mtimes
            # identify it): the same study can be continued from another working folder
            "split": {k: v for k, v in self.split.items() if k != "source"},
            "backend": self.base.backends[0],
            "sampler": {"name": "TPESampler", "seed": self.sampler_seed,
                        "seed_per_trial": f"seed * {SEED_STRIDE} + trial number",
                        "n_startup_trials": self.startup_trials}}))

    def folder(self, number: int) -> Path:
        return Path(self.trial_root) / res.loss_stem(self.name) / f"trial{number}"

    def trial_config(self, folder_number: int, point: dict) -> HarnessConfig:
        """The harness config of a trial at ``point`` (its lr, weight decay, loss settings)."""
        training, settings = search_space.split(point)
        settings = {**self.fixed, **settings}
        folder = self.folder(folder_number)
        return dataclasses.replace(
            self.base, losses=(self.loss,), loss_args={self.loss: settings} if settings else {},
            lr=float(training["lr"]), weight_decay=float(training["weight_decay"]),
            results=str(folder), runs=str(folder / "ckpt"), models=str(folder / "models"),
            plots=False)


def open_study(t: Tuning, storage, budget: int, command: str = ""):
    """Create or reopen the study of ``t``; refuses a study made with another protocol."""
    import optuna

    study = optuna.create_study(storage=storage, study_name=t.name, direction="maximize",
                                load_if_exists=True)
    protocol = t.protocol()
    recorded = study.user_attrs.get("protocol")
    if recorded is not None and recorded != protocol:
        keys = sorted(k for k in protocol if recorded.get(k) != protocol[k])
        raise ValueError(f"study {t.name!r} in {storage_url_of(storage)} was made with another "
                         f"protocol (differs in: {', '.join(keys)}); use another --results "
                         "folder, or delete the study to start it again")
    if recorded is None:
        study.set_user_attr("protocol", protocol)
    study.set_user_attr("budget", int(budget))
    if command:
        study.set_user_attr("command", command)
    return study


def storage_url_of(storage) -> str:
    return getattr(storage, "url", None) or str(storage)


def interrupted(study) -> set[int]:
    return set(study.user_attrs.get("interrupted", []))


def counts(study) -> dict:
    """{"complete", "failed", "interrupted", "running", "waiting"} trial counts."""
    from optuna.trial import TrialState

    skip = interrupted(study)
    out = dict.fromkeys(("complete", "failed", "interrupted", "running", "waiting"), 0)
    for tr in study.get_trials(deepcopy=False):
        if tr.state == TrialState.COMPLETE:
            out["complete"] += 1
        elif tr.state == TrialState.FAIL:
            out["interrupted" if tr.number in skip else "failed"] += 1
        elif tr.state == TrialState.RUNNING:
            out["running"] += 1
        elif tr.state == TrialState.WAITING:
            out["waiting"] += 1
    return out


def finished(study) -> int:
    """Trials that count toward the budget: complete + failed (interrupted ones excluded)."""
    c = counts(study)
    return c["complete"] + c["failed"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(trial) -> bool:
    """A RUNNING trial whose process is gone: started here by a dead process, by this very
    process (no trial of it runs while a study is being opened), or never claimed."""
    host, pid = trial.user_attrs.get("host"), trial.user_attrs.get("pid")
    if pid is None:
        return True
    if host != socket.gethostname():
        return False
    return pid == os.getpid() or not _alive(int(pid))


def mark_interrupted(study, trial, log=print) -> None:
    """Fail ``trial`` (a FrozenTrial or Trial), list it as interrupted, enqueue its point."""
    from optuna.trial import TrialState

    params = dict(trial.params)
    origin = trial.user_attrs.get("redo_of", trial.number)
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    study.set_user_attr("interrupted", sorted(interrupted(study) | {trial.number}))
    if params:
        study.enqueue_trial(params, user_attrs={"redo_of": origin})
    log(f"[tune] {study.study_name}: trial {trial.number} was interrupted; its point is "
        "enqueued again" + ("" if params else " (it had none yet: a fresh trial replaces it)"))


def recover(study, log=print) -> list[int]:
    """Mark the stale RUNNING trials interrupted (``is_stale``); returns their numbers."""
    from optuna.trial import TrialState

    stale = [tr for tr in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
             if is_stale(tr)]
    for tr in stale:
        mark_interrupted(study, tr, log)
    return [tr.number for tr in stale]


def trial_seed(sampler_seed: int, number: int) -> int:
    return (sampler_seed * SEED_STRIDE + number) % 2**32


def tune(t: Tuning, storage, budget: int, run_harness, log=print, command: str = ""):
    """Run the study of ``t`` until it has ``budget`` finished trials; returns the study.

    ``run_harness(cfg, log=...)`` is ``bench.run.harness.run`` (passed in so that this module
    imports no framework).
    """
    import optuna

    if budget < 1:
        raise ValueError(f"--trials must be an integer >= 1, got {budget}")
    study = open_study(t, storage, budget, command)
    recover(study, log)
    while finished(study) + counts(study)["running"] < budget:
        number = len(study.get_trials(deepcopy=False))
        study.sampler = optuna.samplers.TPESampler(seed=trial_seed(t.sampler_seed, number),
                                                   n_startup_trials=t.startup_trials)
        trial = study.ask()
        run_trial(study, trial, t, run_harness, log)
    return study


def run_trial(study, trial, t: Tuning, run_harness, log=print):
    """Train one trial's cell and tell the study its value (or its failure)."""
    from optuna.trial import TrialState

    from bench.report.results import git_commit

    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    start = time.perf_counter()
    try:
        point = search_space.suggest(trial, t.loss, t.fixed)
        cfg = t.trial_config(trial.user_attrs.get("redo_of", trial.number), point)
        label = loss_settings.run_labels(cfg.losses, cfg.loss_args, [t.loss])[0]
        trial.set_user_attr("label", label)
        trial.set_user_attr("folder", cfg.results)
        trial.set_user_attr("commit", git_commit())
        records = run_harness(cfg, log=lambda line: log(f"[tune {t.name} #{trial.number}] "
                                                        f"{line}"))
    except BaseException:
        mark_interrupted(study, trial, log)
        raise
    wall = time.perf_counter() - start
    record = records[0] if records else {"status": "error", "message": "no cell was run"}
    metrics = (record.get("final_eval") or {}).get(VAL_TARGET, {})
    value = metrics.get("acc_mean", math.nan)
    status = record.get("status", "error")
    if status == "ok" and not math.isfinite(value):
        status = "nonfinite"  # a cell that finished with a NaN accuracy: no usable value
    ok = status == "ok"
    trial.set_user_attr("status", status)
    trial.set_user_attr("message", record.get("message", "") or "")
    trial.set_user_attr("val_acc_std", float(metrics.get("acc_std", math.nan)))
    trial.set_user_attr("wall_s", round(wall, 3))
    shutil.rmtree(Path(cfg.models), ignore_errors=True)  # never used again; ~MBs per trial
    if ok:
        study.tell(trial, float(value))
    else:
        study.tell(trial, state=TrialState.FAIL)
    log(f"[tune] {t.name} trial {trial.number}: "
        + (f"val acc {value:.4f}" if ok else f"failed ({status}: "
           f"{record.get('message', '')})")
        + f", {wall:.1f} s, {point}")
    return trial


def best_point(study) -> dict | None:
    """The best complete trial's point ({lr, weight_decay, loss settings}); None if none."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return dict(study.best_trial.params)


def load_study(storage, name: str):
    """The study ``name`` of ``storage``, or None when it does not exist."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def rounded(point: dict, digits: int = 4) -> dict:
    """``point`` with floats to ``digits`` significant digits (the final stage's settings, so
    that labels and tables stay readable); ints and other values as they are."""
    return {k: float(f"{v:.{digits}g}") if isinstance(v, float) else v for k, v in point.items()}
