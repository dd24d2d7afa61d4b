"""PyTorch helpers that have to differ from the Gluon ones (same names in ``gluon_impl.ops``).

The fused head ``margin_cross_entropy`` is the hot path of every softmax-family loss: one
GEMM forward, two backward, and only the B x C passes that the cross-entropy itself needs.
"""

from __future__ import annotations

import torch

from . import native

NORM_EPS_SQ = 1e-24  # |x| = sqrt(sum x^2 + 1e-24): finite gradient at x = 0 (as Gluon's)


def _norms(x: torch.Tensor) -> torch.Tensor:
    """sqrt(<x_i, x_i> + 1e-24) per row, no autograd (``row_norm``'s and the head's value)."""
    return torch.linalg.vecdot(x, x).add_(NORM_EPS_SQ).sqrt_()


class _RowNorm(torch.autograd.Function):
    """|x_i| = sqrt(<x_i, x_i> + 1e-24), backward g_i x_i / |x_i|: two operations each way
    where the formula as torch operations records six, with B x D temporaries (the norm is
    on MagFace's, AdaFace's and SphereFace's hot path)."""

    @staticmethod
    def forward(ctx, x):
        norm = _norms(x)
        ctx.save_for_backward(x, norm)
        return norm

    @staticmethod
    def backward(ctx, grad):
        x, norm = ctx.saved_tensors
        return x * (grad / norm)[:, None]


def row_norm(x: torch.Tensor) -> torch.Tensor:
    """|x_i| for every row, shape (B,), with a finite gradient at the zero vector."""
    return _RowNorm.apply(x)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows divided by their norm (see ``row_norm``)."""
    return x / row_norm(x)[:, None]


def all_finite(x: torch.Tensor) -> bool:
    """No NaN or +-Inf in x. min and max propagate NaN and are Inf when an Inf is there, so
    one aminmax pass decides: about 10x faster than isfinite(x).all() on CPU, which writes a
    boolean tensor first (0.25 ms of a 10 ms head at B=256, D=512)."""
    if x.numel() == 0:
        return True
    lo, hi = torch.aminmax(x)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def curricular_threshold(cos_y: torch.Tensor, s: float, cos_m: float, sin_m: float,
                         sin_eps: float) -> torch.Tensor:
    """CurricularFace's per-row threshold s cos(theta_y + m) from the target cosines (no
    gradient: the rule is a step), sin theta_y = sqrt(max(1 - c^2, eps)), c clamped to [-1, 1]."""
    c = torch.clamp(cos_y.detach(), -1.0, 1.0)
    sin = torch.sqrt(torch.clamp_min(1.0 - c * c, sin_eps))
    return s * (c * cos_m - sin * sin_m)


def clip(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """clamp(x, lo, hi) (its gradient is 0 outside [lo, hi]); the Gluon twin avoids F.clip."""
    return torch.clamp(x, lo, hi)


def clamp_st(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """clamp(x, lo, hi) in value, identity in gradient.

    Exact cosines lie in [-1, 1]; the clamp only removes rounding, so its gradient is taken
    as 1 (both backends), which keeps the gradient continuous at cos = +-1.
    """
    return x + (torch.clamp(x, lo, hi) - x).detach()


def stop_gradient(x: torch.Tensor) -> torch.Tensor:
    return x.detach()


def gather_target(matrix: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """matrix[i, labels[i]] for every row (B values; no one-hot)."""
    return matrix.gather(1, labels[:, None])[:, 0]


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(same label and i != j, different label) as B x B booleans (B x B only, never B x C)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


class _MarginCrossEntropy(torch.autograd.Function):
    """mean_i CE(z_i, y_i), z_ij = <xs_i, W_j> n_j, the target replaced by r_i h(z_iy / r_i).

    n_j = 1/|W_j| when the weights are normalised (else 1), h the loss's ``target_logit`` hook
    (differentiated by autograd on the B target values only). Cost beyond the three GEMMs:
    - W/|W| is never formed: n is folded into the logits' columns, and the normalisation's
      backward into grad_W = A - n^2 <A, W> W with A = G^T xs (one in-place C x D pass);
    - forward keeps e = exp(z - max) in the GEMM's own buffer and the row sums S; backward
      turns e into the final gradient G in place (times n_j, times the row factor
      grad_out / (B S_i), the target column written), so all three GEMMs take G, x and W as
      they are and the B x C gradient is written once;
    - on CPU these B x C sweeps and the normalisations' backward are C++ passes
      (``native``); elsewhere the same formulas run as torch operations.
    Backward consumes the saved buffer: a second backward through the same graph raises.

    ``hard`` = (t, s, cos m, sin m, eps) adds CurricularFace's rule on the non-target logits:
    z_ij (= s cos_j) above s cos(theta_y + m), with sin theta_y = sqrt(max(1 - cos^2, eps)),
    becomes z_ij (t + z_ij / s), and the gradient is multiplied by dz'/dz (t + 2 z / s where
    the rule applies, else 1) before the target column is written, as in the unfused formula.

    ``embed_scale`` = s: ``xs`` is the raw embedding x and the head uses s x / |x| (the
    normalised, scaled embedding of NormFace and its margins) without autograd nodes of its own:
    forward scales the logits' rows by s/|x|, and since G carries that factor, G W is
    (s/|x|) g for the gradient g of s x/|x|; x's gradient is then G W - x <G W, x> / |x|^2.
    """

    @staticmethod
    def forward(ctx, xs, weight, labels, row_scale, normalize_weight, hook, norm=None,
                hard=None, embed_scale=None):
        labels = labels.contiguous()
        col = labels[:, None]
        fast = native.usable(xs) and xs.is_contiguous() and weight.is_contiguous()
        x_norm = x_scale = inv_norm = None
        # |x| given (MagFace, AdaFace) with s x / |x|: one norm serves both, and its gradient
        # joins x's in the backward's projection pass instead of a row_norm backward of its own
        ctx.fold_norm = norm is not None and embed_scale is not None
        if embed_scale is not None:  # xs is x: the GEMM sees s x / |x|
            x_norm = norm.detach() if ctx.fold_norm else _norms(xs)
            x_scale = embed_scale / x_norm
        if normalize_weight:
            w_norm = torch.linalg.vector_norm(weight, dim=1)
            inv_norm = w_norm.mul_(w_norm).add_(NORM_EPS_SQ).rsqrt_()
        logits = torch.mm(xs, weight.t())
        # z_y from the raw GEMM output, scaled in the order the row pass uses
        z_y = logits.gather(1, col)[:, 0]
        if x_scale is not None:
            z_y = z_y * x_scale
        if inv_norm is not None:
            z_y = z_y * inv_norm[labels]
        rule = None
        if hard is not None:
            t, s, cos_m, sin_m, sin_eps = hard
            rule = (curricular_threshold(z_y / s, s, cos_m, sin_m, sin_eps), s, t)
        graph = None
        target = z_y
        if hook is not None:
            with torch.enable_grad():
                z_leaf = z_y.detach().requires_grad_(True)
                r_leaf = row_scale.detach().requires_grad_(True)
                if norm is None:  # the usual hook of cos_y alone
                    leaves = (z_leaf, r_leaf)
                    t_hook = r_leaf * hook(z_leaf / r_leaf)
                else:  # margins that depend on |x| (MagFace, AdaFace): hook(cos_y, |x|)
                    n_leaf = norm.detach().requires_grad_(True)
                    leaves = (z_leaf, r_leaf, n_leaf)
                    t_hook = r_leaf * hook(z_leaf / r_leaf, n_leaf)
            graph = (t_hook, leaves)
            target = t_hook.detach()
        if fast:
            if rule is not None:
                rule = (rule[0].to(logits.dtype).contiguous(), rule[1], float(rule[2]))
            sum_exp, row_max, deriv = native.softmax_rows(logits, x_scale, inv_norm, labels,
                                                          target.contiguous(), rule)
        else:
            sum_exp, row_max, deriv = _softmax_rows_torch(logits, x_scale, inv_norm, col,
                                                          target, rule)
        exp = logits  # e = exp(z - max), in the GEMM's buffer
        lse = sum_exp.log() + row_max
        ctx.graph, ctx.normalize_weight, ctx.consumed = graph, normalize_weight, False
        ctx.embed, ctx.fast, ctx.deriv = embed_scale is not None, fast, deriv
        empty = torch.empty(0)
        ctx.save_for_backward(xs, weight, labels, exp, sum_exp,
                              inv_norm if inv_norm is not None else empty,
                              x_norm if ctx.embed else empty, x_scale if ctx.embed else empty)
        return (lse - target).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        if ctx.consumed:
            raise RuntimeError("margin_cross_entropy: backward through the same graph twice "
                               "is not supported (its buffer is reused for the gradient)")
        ctx.consumed = True
        xs, weight, labels, exp, sum_exp, inv_norm, x_norm, x_scale = ctx.saved_tensors
        deriv, ctx.deriv = ctx.deriv, None
        inv_norm = inv_norm if ctx.normalize_weight else None
        col = labels[:, None]
        batch = labels.shape[0]
        # dCE/dtarget = p_y - 1, then through the hook: dL/dz_y (and dL/dr for |x| scales)
        grad_t = exp.gather(1, col)[:, 0] / sum_exp - 1.0
        grad_r = grad_n = None
        if ctx.graph is not None:
            t, leaves = ctx.graph
            grads = torch.autograd.grad(t, leaves, grad_t, allow_unused=True,
                                        materialize_grads=True)
            grad_t, grad_r = grads[0], grads[1] * (grad_out / batch)
            if len(grads) == 3:
                grad_n = grads[2] * (grad_out / batch)
        # G_ij = dL/dz_ij n_j a_i with a_i = s/|x_i| (embed) or 1: the GEMMs' common factor
        row = grad_out / batch
        if ctx.embed:
            row = row * x_scale
        target_grad = grad_t * row
        if inv_norm is not None:
            target_grad = target_grad * inv_norm[labels]
        row = row / sum_exp
        if ctx.fast:
            native.grad_rows(exp, deriv, inv_norm, row.contiguous(), labels,
                             target_grad.contiguous())
        else:
            _grad_rows_torch(exp, deriv, inv_norm, row, col, target_grad)
        grad = exp
        grad_xs = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_xs = torch.mm(grad, weight)
            if ctx.embed:  # G W - x <G W, x> / |x|^2 (+ x dL/d|x| / |x| for a given |x|)
                offset = grad_n / x_norm if ctx.fold_norm else None
                _project_rows(grad_xs, xs, 1.0 / (x_norm * x_norm), ctx.fast, offset)
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(grad.t(), xs)
            if inv_norm is not None:
                _project_rows(grad_w, weight, inv_norm * inv_norm, ctx.fast)
        if ctx.fold_norm:  # already in grad_xs
            grad_n = None
        return grad_xs, grad_w, None, grad_r, None, None, grad_n, None, None


def _softmax_rows_torch(logits, x_scale, inv_norm, col, target, rule):
    """``native.softmax_rows`` as torch operations (CUDA, no compiler): same products, same
    order; CurricularFace's rule as a multiplier matrix M and a mask, dz'/dz = 2 M - t."""
    if x_scale is not None:
        logits.mul_(x_scale[:, None])
    if inv_norm is not None:
        logits.mul_(inv_norm)
    deriv = None
    if rule is not None:
        threshold, s, t = rule
        keep = logits <= threshold[:, None]
        mult = torch.add(t.to(logits.dtype), logits, alpha=1.0 / s).masked_fill_(keep, 1.0)
        logits.mul_(mult)
        deriv = mult.mul_(2.0).sub_(t.to(logits.dtype)).masked_fill_(keep, 1.0)
    logits.scatter_(1, col, target[:, None].to(logits.dtype))
    row_max = logits.amax(dim=1, keepdim=True)
    exp = logits.sub_(row_max).exp_()
    return exp.sum(dim=1), row_max[:, 0], deriv


def _grad_rows_torch(grad, deriv, inv_norm, row, col, target_grad):
    """``native.grad_rows`` as torch operations."""
    if deriv is not None:
        grad.mul_(deriv)
    if inv_norm is not None:
        grad.mul_(inv_norm)
    grad.mul_(row[:, None])
    grad.scatter_(1, col, target_grad[:, None])


def _project_rows(grad, v, k, fast, offset=None):
    """grad_i -= v_i (<grad_i, v_i> k_i - o_i) in place (a row normalisation's backward; see
    ``native.project_rows``)."""
    if fast and grad.is_contiguous() and v.is_contiguous():
        native.project_rows(grad, v, k.contiguous(),
                            None if offset is None else offset.contiguous())
    else:
        coef = torch.linalg.vecdot(grad, v) * k
        if offset is not None:
            coef = coef - offset
        grad.addcmul_(v, coef[:, None], value=-1.0)


def margin_cross_entropy(xs, weight, labels, row_scale, normalize_weight, hook, norm=None,
                         hard=None, embed_scale=None):
    """Fused margin head; see ``_MarginCrossEntropy``. row_scale, norm: (B,) tensors; with
    ``norm`` the hook is called as hook(cos_y, norm) and the gradient flows into norm too (with
    ``embed_scale``, norm must be ``row_norm(xs)``: the head uses it as |x| and passes its
    gradient to xs directly);
    ``hard`` = (t, s, cos m, sin m, eps): CurricularFace's hard-negative rule (t without
    gradient); ``embed_scale`` = s: ``xs`` is the raw embedding, used as s x / |x|."""
    return _MarginCrossEntropy.apply(xs, weight, labels, row_scale, normalize_weight, hook,
                                     norm, hard, embed_scale)


def upper_pairs(labels: torch.Tensor) -> torch.Tensor:
    """B x B boolean, True for i < j (each unordered pair once)."""
    n = labels.shape[0]
    return torch.ones(n, n, dtype=torch.bool, device=labels.device).triu(diagonal=1)
