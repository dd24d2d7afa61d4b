"""Model-parallel margin head: the class weights sharded across ranks (InsightFace Partial FC).

An, Zhu, Xiao, Fu, Wu, Qin, Feng, Zhang, Fu: "Killing Two Birds with One Stone: Efficient and
Robust Training of Face Recognition CNNs by Partial FC", CVPR 2022 (arXiv:2203.15565).

Rank k holds the rows [start_k, end_k) of W (``distributed.shard_bounds``, the same split as a
batch). Every rank all-gathers the global batch of embeddings and labels, computes its B x C_k
logits with the loss's own scale, weight normalisation and ``target_logit`` hook (the target
column only on the rank that owns the label), and the softmax cross-entropy is assembled with
two all-reduces: the row maximum (MAX) and the row sum of exp (SUM); the target logits are
all-reduced (SUM, one owner per row). The result is the mean over the *global* batch, equal on
every rank, and in exact mode (``sample_rate=1``) equal in value and gradient to the
single-process ``MarginSoftmax`` head. Any registered ``shardable`` loss works unchanged: the
head reads ``normalize_weight``, ``normalize_embedding``, ``scale_by_norm``, ``scale``,
``target_logit`` and ``penalty`` from a loss built for the shard's classes; no per-loss code
here. The ``SoftmaxHead`` losses that are not ``MarginSoftmax`` (Sub-center ArcFace: K weight
rows per class; CurricularFace: a rule on the non-target logits) say how they differ through
the protocol of ``SoftmaxHead`` (losses/base.py): ``scaled_class_logits``, ``rows_per_class``,
``target_logit``, ``negative_rule`` and, where ``state_from_target_cosines``,
``target_cosines`` and ``advance``; their shard runs as autograd operations (``_sharded_ce``),
with one more all-reduce (every row's target logit, which the rule's threshold needs).

Negative-class sampling (``sample_rate`` r < 1, Partial FC's "PFC-r"): each rank keeps every
class of its shard that is a label in the global batch (the positives) plus random other
classes up to ceil(r C_k) in all; the softmax runs over the kept classes only. The draw comes
from a generator seeded by (seed, rank, draw counter), so a run is reproducible. Classes not
drawn get zero gradient this step (with plain SGD their momentum and weight decay still apply).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from common.contract import check_int, check_real, resolve_auto

from . import ops
from .distributed import (
    gather_rows,
    gather_rows_nograd,
    rank_and_world,
    row_offset,
    shard_bounds,
)
from .losses.base import Loss, MarginSoftmax, build_loss, loss_class


def _scaled_inputs(head: MarginSoftmax, x: torch.Tensor):
    """(xs, r, |x| or None) exactly as ``MarginSoftmax.compute`` forms them."""
    norm = ops.row_norm(x) if head.uses_norm else None
    if head.scale_by_norm:
        return x, ops.row_norm(x), norm
    if head.normalize_embedding:
        n = ops.row_norm(x)
        return x * (head.scale / n)[:, None], torch.full_like(n, head.scale), norm
    return x, torch.ones(x.shape[0], dtype=x.dtype, device=x.device), norm


def _all_reduce(t: torch.Tensor, op, group) -> None:
    """In-place all-reduce; without a process group (one rank holds every class) a no-op."""
    if dist.is_initialized():
        dist.all_reduce(t, op=op, group=group)


def shardable(loss) -> bool:
    """A built loss that ``PartialFC`` can shard (it declares ``shardable``)."""
    return isinstance(loss, Loss) and loss.shardable


class _SumOverRanks(torch.autograd.Function):
    """Sum of a tensor over the ranks; backward passes the gradient through unchanged: every
    rank computes the same global loss from the sum, so the gradient of its own part is the
    gradient of the sum."""

    @staticmethod
    def forward(ctx, t, group):
        out = t.clone()
        _all_reduce(out, dist.ReduceOp.SUM, group)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _sharded_ce(head, x_all, weight, local_labels, group):
    """Global mean CE of a shard of a ``SoftmaxHead`` that is not a ``MarginSoftmax`` (autograd).

    The target logit of each row comes from its owner (a sum over ranks of the owners' values),
    so ``target_logit`` and ``negative_rule`` see every row on every rank; the target column is
    replaced on the owner only, the row max and the row sum of exp are all-reduced.
    """
    s = head.scale
    logits = head.scaled_class_logits(x_all, weight)
    mine = torch.nonzero(local_labels >= 0)[:, 0]
    cols = local_labels[mine]
    z = torch.zeros(x_all.shape[0], dtype=logits.dtype, device=logits.device)
    z = _SumOverRanks.apply(z.index_put((mine,), logits[mine, cols]), group)
    target = s * head.target_logit(z / s)
    logits = head.negative_rule(logits, z / s)
    logits = logits.index_put((mine, cols), target[mine])
    row_max = (logits.detach().amax(dim=1) if logits.shape[1]
               else torch.full_like(z, -math.inf).detach())
    _all_reduce(row_max, dist.ReduceOp.MAX, group)
    sum_exp = _SumOverRanks.apply(torch.exp(logits - row_max[:, None]).sum(dim=1), group)
    return (torch.log(sum_exp) + row_max - target).mean()


class _ShardedMarginCE(torch.autograd.Function):
    """Global mean CE over class shards; ``local_labels`` is -1 where another rank owns y_i.

    The algebra and the buffer reuse of ``ops._MarginCrossEntropy`` (see it: W/|W| never
    formed, exp(z - max) kept in the GEMM's buffer, the 1/S row factor on the B x D side), with
    the row max, the row sum S and the target all-reduced. The hook runs on all B rows (0, a
    safe cosine, where another rank owns the label) so that hooks using batch statistics of
    |x| (AdaFace) see the whole batch; only owned rows feed the loss. The gradients returned
    for ``xs``, ``row_scale`` and ``norm`` are this shard's part; ``gather_rows`` sums them.
    """

    @staticmethod
    def forward(ctx, xs, weight, local_labels, row_scale, normalize_weight, hook, group, norm):
        logits = torch.mm(xs, weight.t())
        inv_norm = None
        if normalize_weight:
            w_norm = torch.linalg.vector_norm(weight, dim=1)
            inv_norm = w_norm.mul_(w_norm).add_(ops.NORM_EPS_SQ).rsqrt_()
            logits.mul_(inv_norm)
        mine = torch.nonzero(local_labels >= 0)[:, 0]
        cols = local_labels[mine]
        z = torch.zeros(xs.shape[0], dtype=xs.dtype, device=xs.device)
        z[mine] = logits[mine, cols]
        graph = None
        t = z
        if hook is not None:
            with torch.enable_grad():
                leaves = (z.detach().requires_grad_(True), row_scale.detach().requires_grad_(True))
                if norm is None:
                    t_all = leaves[1] * hook(leaves[0] / leaves[1])
                else:  # margins that depend on |x| (MagFace, AdaFace)
                    leaves += (norm.detach().requires_grad_(True),)
                    t_all = leaves[1] * hook(leaves[0] / leaves[1], leaves[2])
            graph = (t_all, leaves)
            t = t_all.detach()
            logits[mine, cols] = t[mine]
        target = torch.zeros_like(z)
        target[mine] = t[mine]
        row_max = logits.amax(dim=1) if logits.shape[1] else torch.full_like(z, -math.inf)
        _all_reduce(row_max, dist.ReduceOp.MAX, group)
        exp = logits.sub_(row_max[:, None]).exp_()  # e = exp(z - max), in the GEMM's buffer
        sum_exp = exp.sum(dim=1)
        _all_reduce(sum_exp, dist.ReduceOp.SUM, group)
        _all_reduce(target, dist.ReduceOp.SUM, group)
        lse = sum_exp.log() + row_max
        ctx.graph, ctx.normalize_weight, ctx.consumed = graph, normalize_weight, False
        ctx.save_for_backward(xs, weight, mine, cols, exp, sum_exp,
                              inv_norm if inv_norm is not None else torch.empty(0))
        return (lse - target).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        if ctx.consumed:
            raise RuntimeError("PartialFC: backward through the same graph twice is not "
                               "supported (its buffer is reused for the gradient)")
        ctx.consumed = True
        xs, weight, mine, cols, exp, sum_exp, inv_norm = ctx.saved_tensors
        batch = xs.shape[0]
        grad_t = torch.zeros_like(sum_exp)
        grad_t[mine] = exp[mine, cols] / sum_exp[mine] - 1.0  # dCE/dtarget = p_y - 1
        grad_r = grad_n = None
        if ctx.graph is not None:
            t_all, leaves = ctx.graph
            grads = torch.autograd.grad(t_all, leaves, grad_t, allow_unused=True,
                                        materialize_grads=True)
            grad_t, grad_r = grads[0], grads[1] * (grad_out / batch)
            if len(grads) == 3:
                grad_n = grads[2] * (grad_out / batch)
        grad = exp  # G stored pre-divided by the row sums S, as in ops
        if ctx.normalize_weight:
            grad.mul_(inv_norm)
            grad[mine, cols] = grad_t[mine] * sum_exp[mine] * inv_norm[cols]
        else:
            grad[mine, cols] = grad_t[mine] * sum_exp[mine]
        row_factor = grad_out / (batch * sum_exp)
        grad_xs = torch.mm(grad, weight).mul_(row_factor[:, None])
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(grad.t(), xs * row_factor[:, None])
            if ctx.normalize_weight:
                coef = torch.linalg.vecdot(grad_w, weight) * inv_norm * inv_norm
                grad_w.addcmul_(weight, coef[:, None], value=-1.0)
        return grad_xs, grad_w, None, grad_r, None, None, None, grad_n


class PartialFC(nn.Module):
    """This rank's shard of a ``shardable`` loss's head; ``forward(x_local, y_local)`` returns
    the loss of the global batch (see the module docstring).

    ``loss``: a registered name (``build_loss`` arguments in ``hyperparams``) or a built
    single-process loss whose rows [start, end) are copied (tests, conversion from a
    single-process checkpoint). ``sample_rate`` in (0, 1]; 1 is exact. The shard's loss is
    built for the shard's classes, with the hyper-parameters of the whole head: an ``"auto"``
    (``scale="auto"``, AdaCos's sqrt(2) ln(C - 1)) is resolved with the full ``num_classes``
    first, and a built loss's ``scale`` is the number it resolved.
    """

    def __init__(self, loss, num_classes: int | None = None, embedding_size: int | None = None,
                 sample_rate: float = 1.0, seed: int = 0, group=None, **hyperparams):
        super().__init__()
        self.group = group
        self.rank, self.world_size = rank_and_world(group)
        self.sample_rate = check_real("PartialFC", "sample_rate", sample_rate, 0.0, 1.0,
                                      lo_open=True)
        self.seed = int(seed)
        if not isinstance(loss, str) and shardable(loss):
            full = loss
            num_classes, embedding_size = full.num_classes, full.embedding_size
            name = full.registered_name
        elif isinstance(loss, str):
            full, name = None, loss
        else:
            raise ValueError(f"PartialFC: argument 'loss' must be a loss name or a "
                             f"softmax-family margin loss, got {type(loss).__name__}")
        self.num_classes = check_int("PartialFC", "num_classes", num_classes, self.world_size,
                                     2**31 - 1)
        self.start, self.end = shard_bounds(self.num_classes, self.world_size, self.rank)
        if full is None:  # "auto" values (the AdaCos scale) are of the full class count
            hyperparams = resolve_auto(loss_class(name).specs(), hyperparams, self.num_classes)
            shard = build_loss(name, num_classes=self.end - self.start,
                               embedding_size=embedding_size, **hyperparams)
            if not shardable(shard):
                raise ValueError(f"PartialFC: loss {name!r} is not a softmax-family margin loss")
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.rank)
            with torch.no_grad():  # each rank its own stream: shards differ, runs repeat
                shard.weight.copy_(torch.randn(shard.weight.shape, generator=gen) * 0.01)
        else:
            kw = {k: getattr(full, k) for k in type(full).hyperparameters()}
            shard = type(full)(num_classes=self.end - self.start,
                               embedding_size=embedding_size, **kw).to(full.weight.dtype)
            k = full.rows_per_class
            with torch.no_grad():
                shard.weight.copy_(full.weight[self.start * k: self.end * k])
                for key in shard.state_names:
                    if key != "weight":
                        getattr(shard, key).copy_(getattr(full, key))
        self.rows_per_class = shard.rows_per_class
        if shard.weight.shape[0] != (self.end - self.start) * self.rows_per_class:
            raise ValueError(f"PartialFC: loss {name!r} keeps {shard.weight.shape[0]} weight rows "
                             f"for {self.end - self.start} classes; expected "
                             f"{self.rows_per_class} per class")
        self.head = shard  # holds the weight shard, the hooks and any state (SphereFace)
        self.embedding_size = shard.embedding_size
        self._draws = 0
        self.last_index = None  # classes of the shard used by the last forward (local ids)

    @property
    def weight(self) -> nn.Parameter:
        return self.head.weight

    def extra_repr(self) -> str:
        return (f"{self.head.registered_name}, classes [{self.start}, {self.end}) of "
                f"{self.num_classes}, sample_rate={self.sample_rate:g}")

    def sample(self, labels_all: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(kept local class ids, sorted; local_labels remapped into them or -1)."""
        count = self.end - self.start
        owned = (labels_all >= self.start) & (labels_all < self.end)
        local = torch.where(owned, labels_all - self.start, torch.full_like(labels_all, -1))
        keep = max(1, math.ceil(self.sample_rate * count))
        if keep >= count:
            return torch.arange(count, device=labels_all.device), local
        positives = torch.unique(local[owned])
        gen = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.rank) * 1_000_003 + self._draws)
        self._draws += 1
        score = torch.rand(count, generator=gen).to(labels_all.device)
        score[positives] = 2.0  # positives first, then random negatives
        index = torch.topk(score, k=max(keep, len(positives)))[1].sort()[0]
        remapped = torch.searchsorted(index, local.clamp_min(0))
        return index, torch.where(owned, remapped, local)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.embedding_size:
            raise ValueError(f"PartialFC: embeddings must have shape (B, "
                             f"{self.embedding_size}), got {tuple(x.shape)}")
        if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
            raise ValueError(f"PartialFC: labels must have shape ({x.shape[0]},), "
                             f"got {tuple(labels.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
            x_all = gather_rows(x.to(dtype), True, self.group)
            labels_all = gather_rows_nograd(labels.long(), self.group)
            if x_all.shape[0] == 0:
                raise ValueError("PartialFC: the global batch is empty")
            lo, hi = int(labels_all.min()), int(labels_all.max())
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(f"PartialFC: labels must be in [0, {self.num_classes}), "
                                 f"got values in [{lo}, {hi}]")
            index, local_labels = self.sample(labels_all)
            self.last_index = index
            weight = self.weight.to(dtype)
            k = self.rows_per_class
            if len(index) * k < weight.shape[0]:  # the kept classes' rows (K each, class-major)
                weight = weight.reshape(-1, k, weight.shape[1]).index_select(0, index).reshape(
                    -1, weight.shape[1])
            if not isinstance(self.head, MarginSoftmax):
                return _sharded_ce(self.head, x_all, weight, local_labels, self.group)
            xs, r, norm = _scaled_inputs(self.head, x_all)
            hook = None if self.head.target_logit is None else self.head._clamped_hook
            value = _ShardedMarginCE.apply(xs, weight, local_labels, r,
                                           self.head.normalize_weight, hook, self.group, norm)
            if self.head.penalty is not None:  # replicated on every rank: gradient sliced,
                x_rep = gather_rows(x.to(dtype), False, self.group)  # not summed
                value = value + self.head.penalty(x_rep, self.head.norm_of(x_rep))
            return value

    @torch.no_grad()
    def step(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Advance the loss's training state like ``Loss.step``, from the global batch (every
        rank the same: SphereFace's iteration, AdaFace's norm statistics; CurricularFace's t
        from the target cosines, each computed by the rank that owns the label)."""
        x_all = gather_rows_nograd(x, self.group)
        labels_all = gather_rows_nograd(labels.long(), self.group)
        if not self.head.state_from_target_cosines:
            self.head.step(x_all, labels_all)
            return
        owned = (labels_all >= self.start) & (labels_all < self.end)
        mine = self.head.target_cosines(x_all[owned], self.weight,
                                        labels_all[owned] - self.start)
        cos_y = torch.zeros(x_all.shape[0], dtype=mine.dtype, device=x_all.device)
        cos_y[owned] = mine
        _all_reduce(cos_y, dist.ReduceOp.SUM, self.group)
        self.head.advance(cos_y)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Global argmax class of each of this rank's rows (cosine logits if W is normalised,
        else W.x), first index on ties: a shard-wise max and two all-reduces."""
        x_all = gather_rows_nograd(x, self.group)
        w = self.weight.to(x_all.dtype)
        if self.head.normalize_weight:
            x_all, w = ops.l2_normalize(x_all), ops.l2_normalize(w)
        logits = x_all @ w.t()
        if self.rows_per_class > 1:  # the best sub-centre of each class
            logits = logits.reshape(logits.shape[0], -1, self.rows_per_class).amax(dim=2)
        best, arg = logits.max(dim=1)
        top = best.clone()
        _all_reduce(top, dist.ReduceOp.MAX, self.group)
        cand = torch.where(best == top, arg + self.start, torch.full_like(arg, self.num_classes))
        _all_reduce(cand, dist.ReduceOp.MIN, self.group)
        lo = row_offset(x.shape[0], self.group, x.device)
        return cand[lo: lo + x.shape[0]]

    @torch.no_grad()
    def full_weight(self) -> torch.Tensor:
        """All shards gathered in class order (C x D): for export and checkpoint conversion."""
        return gather_rows_nograd(self.weight.detach(), self.group)
