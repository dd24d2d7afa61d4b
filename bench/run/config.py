"""``HarnessConfig``: everything that decides a run, and the part of it that is hashed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from common.backends import BACKENDS
from common.schedule import MODES

# not part of a cell's identity: where files go, what is shown, which cells are asked for
UNHASHED = ("results", "runs", "losses", "backends", "force", "progress", "plots", "command",
            "loss_args",  # in each cell's loss label instead, so default cells keep their hashes
            "data", "models")


def setting(default, help: str, **kw):
    """A config field with its command-line help (bench.run.options turns fields into flags)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class HarnessConfig:
    """Everything that decides a run; all of it but ``force``/``progress``/paths is hashed."""

    data: str = setting("", "data folder with train.rec/train.idx/property and *.bin")
    results: str = setting("results", "results root; tables go to RESULTS/<data folder name>/")
    runs: str = setting("runs", "folder for resume checkpoints")
    models: str = setting("models", "models root; each finished cell's model goes to "
                          "MODELS/<data folder name>/<cell>/ (model.npz, head.npz, model.json)")
    losses: tuple[str, ...] = setting(
        (), "comma-separated loss names, or 'all' (every loss registered in both backends, "
        "the joint '<margin>+center/ring' objectives included)")
    backends: tuple[str, ...] = setting(BACKENDS, "comma-separated subset of pytorch,gluon")
    backbone: str = setting("smallcnn", "backbone name: smallcnn, mobilefacenet, iresnet18, ...")
    backbone_kwargs: dict = setting({}, "", cli=False)
    loss_args: dict = setting(
        {}, "a loss's own hyper-parameters, 'LOSS:KEY=VALUE,KEY=VALUE;LOSS:...' (e.g. "
        "'arcface:margin=0.3,scale=32;cosface:margin=0.4') or a .json/.toml file mapping loss "
        "-> {key: value}; 'python -m bench losses' lists every loss's keys, defaults and ranges")
    embedding_size: int = setting(512, "embedding dimension")
    image_size: int = setting(48, "training/evaluation image side; records are resized by the "
                              "loader")
    epochs: int = setting(3, "training epochs per cell")
    steps: int = setting(0, "train exactly this many SGD steps (global batches) instead of "
                         "--epochs passes over the data, evaluated once at the end (0: use "
                         "--epochs); the batches follow the seeded epoch order across epoch "
                         "boundaries, and --warmup-epochs still counts passes over the data")
    batch_size: int = setting(64, "global batch size")
    lr: float = setting(0.1, "base learning rate (SGD)")
    schedule: str = setting("cosine", "learning-rate schedule after the warm-up",
                            choices=MODES)
    warmup_epochs: float = setting(0.5, "linear learning-rate warm-up, in epochs")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(5e-4, "SGD weight decay (weights of rank > 1 only)")
    decay_all: bool = setting(False, "weight decay on every parameter, BatchNorm, biases and "
                              "PReLU included (arcface_torch's rule; default: rank > 1 only)")
    seed: int = setting(0, "seed of the initial weights and the batch order")
    pk: int = setting(4, "images per identity in P x K batches (triplet, contrastive)")
    eval_batch_size: int = setting(200, "batch size of the verification embeddings")
    flip_test: bool = setting(True, "add the flipped image's embedding at evaluation")
    checkpoint_every: int = setting(0, "also checkpoint every N steps (0: at epoch ends only)")
    hybridize: bool = setting(True, "hybridise the Gluon backbone with static_alloc "
                              "(--no-hybridize: imperative, for diagnostics)")
    nproc: int = setting(1, "PyTorch processes per cell (torch.distributed with gloo on CPU, "
                         "DDP backbone + sharded Partial-FC head); --batch-size stays global")
    sample_rate: float = setting(1.0, "Partial-FC negative-class sampling rate with --nproc > 1 "
                                 "(1 = exact)")
    force: bool = setting(False, "redo cells already finished")
    progress: bool = setting(True, "progress bars")
    plots: bool = setting(True, "draw the figures")
    command: str = setting("", "", cli=False)

    def check(self) -> None:
        if not self.backends:
            raise ValueError("backends must name at least one of pytorch, gluon")
        for b in self.backends:
            if b not in BACKENDS:
                raise ValueError(f"backends must be among {', '.join(BACKENDS)}, got {b!r}")
        for name in ("embedding_size", "image_size", "epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0 (0: train --epochs epochs), "
                             f"got {self.steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.schedule not in MODES:
            raise ValueError(f"schedule must be one of {', '.join(MODES)}, got {self.schedule!r}")
        if not isinstance(self.nproc, int) or not 1 <= self.nproc <= self.batch_size:
            raise ValueError(f"nproc must be an integer in [1, batch_size={self.batch_size}], "
                             f"got {self.nproc!r}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate!r}")
        if self.pk < 2 or self.batch_size % self.pk:
            raise ValueError(f"pk must be >= 2 and divide batch_size={self.batch_size}, "
                             f"got {self.pk!r}")


def hashed(cfg: HarnessConfig) -> dict:
    """The config fields that decide a cell's numbers (hashed into its identity)."""
    d = dataclasses.asdict(cfg)
    for k in UNHASHED:
        d.pop(k)
    # added after results existed: hashed only when not at the single-process default, so
    # finished single-process cells keep their hashes
    if d["nproc"] == 1 and d["sample_rate"] == 1.0:
        d.pop("nproc")
        d.pop("sample_rate")
    if not d["decay_all"]:
        d.pop("decay_all")
    # a step budget replaces the epoch count; without one, cells keep their old hashes
    d.pop("epochs" if d["steps"] else "steps")
    return d
