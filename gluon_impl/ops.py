"""Gluon helpers that have to differ from the PyTorch ones (same names in ``pytorch_impl.ops``).

Every function takes ``F`` (``mx.nd`` or ``mx.sym``) first so it works hybridized.
"""

from __future__ import annotations

NORM_EPS_SQ = 1e-24  # |x| = sqrt(sum x^2 + 1e-24): finite gradient at x = 0


def row_norm(F, x):
    """|x_i| = sqrt(sum x^2 + 1e-24) for every row of a 2-D x, shape (B,), with a finite
    gradient at the zero vector: the row-pass operator ``norm_rows`` where ``gluon_impl.native``
    is loaded (MXNet's sum over axis 1 is about 20x slower than a pass), else the graph."""
    from . import native

    if native.available():
        return F.norm_rows(x)
    return F.sqrt(F.sum(x * x, axis=1) + NORM_EPS_SQ)


def l2_normalize(F, x, scale: float = 1.0):
    """scale x_i / sqrt(|x_i|^2 + 1e-24) for a 2-D x, the same formula as torch's: the
    row-pass operator ``l2norm_rows`` where ``gluon_impl.native`` is loaded (one pass each way,
    the scale included), else MXNet's L2Normalization (whose backward takes several broadcast
    passes) times the scale."""
    from . import native

    if native.available():
        return F.l2norm_rows(x, scale=scale)
    out = F.L2Normalization(x, eps=NORM_EPS_SQ, mode="instance")
    return out if scale == 1.0 else out * scale


def clip(F, x, lo: float, hi: float):
    """min(max(x, lo), hi); not F.clip, whose bounds are float32 even for float64 data."""
    return F.minimum(F.maximum(x, lo), hi)


def clamp_st(F, x, lo: float, hi: float):
    """clamp(x, lo, hi) in value, identity in gradient (see pytorch_impl.ops.clamp_st)."""
    return x + F.stop_gradient(clip(F, x, lo, hi) - x)


def stop_gradient(F, x):
    return F.stop_gradient(x)


def gather_target(F, matrix, labels):
    """matrix[i, labels[i]] for every row (B values)."""
    return F.pick(matrix, labels, axis=1)


def replace_target(F, logits, labels, target, num_classes: int):
    """logits with column labels[i] of row i replaced by target[i], out of place.

    index_copy on the flattened (B*C, 1) view touches the B target entries and copies the
    rest once; no B x C one-hot. The flat index is int64 (B*C can exceed 2^24).
    """
    lab = F.cast(labels, dtype="int64")
    flat = F.contrib.arange_like(lab) * num_classes + lab
    out = F.contrib.index_copy(F.reshape(logits, shape=(-1, 1)), flat,
                               F.reshape(target, shape=(-1, 1)))
    return F.reshape_like(out, logits)


def pair_masks(F, labels):
    """(same label and i != j, different label) as B x B 0/1 arrays."""
    col = F.reshape(labels, shape=(-1, 1))
    same = F.broadcast_equal(col, F.reshape(labels, shape=(1, -1)))
    eye = F.broadcast_equal(F.reshape(F.contrib.arange_like(labels), shape=(-1, 1)),
                            F.reshape(F.contrib.arange_like(labels), shape=(1, -1)))
    return same * (1 - eye), 1 - same


def upper_pairs(F, labels):
    """B x B 0/1 array, 1 for i < j (each unordered pair once)."""
    idx = F.contrib.arange_like(labels)
    return F.broadcast_lesser(F.reshape(idx, shape=(-1, 1)), F.reshape(idx, shape=(1, -1)))


def margin_cross_entropy(F, xs, weight, labels, row_scale, normalize_weight, hook,
                         num_classes: int, hard=None):
    """mean_i CE(z_i, y_i), z_ij = <xs_i, W'_j>, target replaced by r_i h(z_iy / r_i).

    Same maths as ``pytorch_impl.ops.margin_cross_entropy``. row_scale: a float or a (B,)
    array; ``hard`` = (t, s, cos m, sin m, eps): CurricularFace's rule on the non-target
    logits (t a (1,) array without gradient). With the row-pass operators
    (``gluon_impl.native``): W' = W/|W| by ``l2norm_rows`` (one pass each way, where
    L2Normalization's backward takes several), the logits by the graph's FullyConnected
    (oneDNN), then ``margin_lse_rows`` (``curricular_lse_rows`` with ``hard``) returns R_i,
    the logsumexp of the non-target logits, and the target logit z_iy (its backward writes the
    logits' gradient in one pass); the graph finishes on B values,
    CE_i = logaddexp(R_i, t_i) - t_i with t_i = r_i h(z_iy / r_i), so the target column is
    never rewritten. Without them, ``margin_cross_entropy_graph``.
    """
    from . import native

    if native.available():
        if normalize_weight:
            weight = l2_normalize(F, weight)
        logits = F.FullyConnected(xs, weight, no_bias=True, num_hidden=num_classes)
        if hard is None:
            lse_rest, z_y = F.margin_lse_rows(logits, labels)
        else:
            t, s, cos_m, sin_m, eps = hard
            lse_rest, z_y = F.curricular_lse_rows(logits, labels, F.stop_gradient(t), scale=s,
                                                  cos_m=cos_m, sin_m=sin_m, sin_eps=eps)
        target = z_y if hook is None else row_scale * hook(z_y / row_scale)
        top = F.stop_gradient(F.maximum(lse_rest, target))
        return F.mean(F.log(F.exp(lse_rest - top) + F.exp(target - top)) + top - target)
    return margin_cross_entropy_graph(F, xs, weight, labels, row_scale, normalize_weight, hook,
                                      num_classes, hard)


def margin_cross_entropy_graph(F, xs, weight, labels, row_scale, normalize_weight, hook,
                               num_classes: int, hard=None):
    """``margin_cross_entropy`` as a plain Gluon graph (the fallback, and the reference).

    W' = W/|W| by ``l2_normalize`` (folding 1/|W| into the logits' columns, as torch does, is
    slower here: MXNet's broadcast backward reduces over B x C).
    """
    if normalize_weight:
        weight = l2_normalize(F, weight)
    logits = F.FullyConnected(xs, weight, no_bias=True, num_hidden=num_classes)
    z_y = F.pick(logits, labels, axis=1)
    if hard is not None:
        t, s, cos_m, sin_m, eps = hard
        c = F.stop_gradient(clip(F, z_y / s, -1.0, 1.0))  # the rule is a step: no gradient
        sin = F.sqrt(F.maximum(1.0 - c * c, eps))
        threshold = s * (c * cos_m - sin * sin_m)
        ruled = F.broadcast_greater(logits, F.reshape(threshold, shape=(-1, 1)))
        curriculum = F.broadcast_add(logits / s, F.reshape(F.stop_gradient(t), shape=(1, 1)))
        logits = F.where(ruled, logits * curriculum, logits)
    if hook is not None or hard is not None:
        target = z_y if hook is None else row_scale * hook(z_y / row_scale)
        logits = replace_target(F, logits, labels, target, num_classes)
    return F.mean(-F.pick(F.log_softmax(logits, axis=1), labels, axis=1))
