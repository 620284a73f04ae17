"""Losses: cross_entropy, nll_loss, mse_loss, l1_loss, with PyTorch's semantics.

Classification losses work on the (M, C) view of the logits: the class dim (1, or 0 for an
unbatched (C,) input) is moved last and every other dim is a sample. With class-index
targets, per sample i with target t_i, class weights w (all 1 when not given), label
smoothing e and the valid mask v_i = (t_i != ignore_index)::

    loss_i = v_i * ((1 - e) * -w[t_i] log p[i, t_i]  +  e / C * -sum_c w_c log p[i, c])

and ``reduction="mean"`` divides the sum by ``sum_i v_i w[t_i]`` (PyTorch's choice, also for
the smoothing term). With class-probability targets q (float, the input's shape),
``loss_i = -sum_c w_c q'_ic log p_ic`` with ``q' = (1 - e) q + e / C`` and "mean" divides by M.
"""
import numbers

import numpy as np

from ..autograd import Function
from ._args import check_float, check_same_dtype, data_of

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "l1_loss"]

_REDUCTIONS = ("none", "mean", "sum")


# ----------------------------------------------------------------------------- helpers

def _check_reduction(op, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: expected reduction to be one of {_REDUCTIONS}, got "
                         f"{reduction!r}")


def _class_axis(op, x):
    """The class dim of an (N, C, d1, ...) or unbatched (C,) input."""
    if x.ndim == 0:
        raise ValueError(f"{op}: expected input of shape (N, C), (N, C, d1, ...) or (C,), "
                         f"got a 0-D input")
    if x.shape[1 if x.ndim > 1 else 0] == 0:
        raise ValueError(f"{op}: expected at least one class, got input of shape "
                         f"{tuple(x.shape)}")
    return 1 if x.ndim > 1 else 0


def _to_rows(x, axis):
    """(M, C) view (or copy) of x with the class axis last."""
    moved = np.moveaxis(x, axis, -1)
    return moved.reshape(-1, moved.shape[-1]), moved.shape


def _from_rows(g, moved_shape, axis):
    return np.moveaxis(g.reshape(moved_shape), -1, axis)


def _check_index_target(op, x, axis, target, ignore_index):
    """Validate integer class indices against an input with C classes along ``axis``."""
    t = data_of(target)
    want = x.shape[:axis] + x.shape[axis + 1:]
    if t.shape != want:
        raise ValueError(f"{op}: expected target of shape {want} for input of shape "
                         f"{tuple(x.shape)}, got {tuple(t.shape)}")
    c = x.shape[axis]
    bad = (t != ignore_index) & ((t < 0) | (t >= c))
    if bad.any():
        raise IndexError(f"{op}: expected target class indices in [0, {c - 1}] (or "
                         f"ignore_index={ignore_index}), got {t[bad].flat[0]}")


def _check_weight(op, weight, c):
    if weight is not None and data_of(weight).shape != (c,):
        raise ValueError(f"{op}: expected weight of shape ({c},) (one per class), got "
                         f"{tuple(data_of(weight).shape)}")


def _check_index_like(op, name, value):
    if not isinstance(value, (numbers.Integral, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{op}: expected {name} to be an int, got {value!r}")
    return int(value)


def _reduce(loss, reduction, denom, shape):
    """Apply the reduction to per-sample losses (M,); ``denom`` is the mean's divisor."""
    if reduction == "none":
        return loss.reshape(shape)
    total = loss.sum()
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / denom, dtype=loss.dtype)   # 0 / 0 = nan, as PyTorch


def _per_sample_scale(grad_out, reduction, denom, m, dtype, valid=None):
    """d(output)/d(loss_i) times the upstream gradient, per sample (M,); exactly 0 where
    ``valid`` is False (ignored targets get no gradient even when the mean's divisor is 0,
    as in PyTorch)."""
    if reduction == "none":
        s = np.asarray(grad_out, dtype=dtype).reshape(m)
    else:
        g = np.asarray(grad_out, dtype=dtype).reshape(())
        if reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                g = g / np.asarray(denom, dtype=dtype)
        s = np.full(m, g, dtype=dtype)
    return s if valid is None else np.where(valid, s, 0).astype(dtype, copy=False)


# ---------------------------------------------------------------------- cross entropy

def _log_softmax_rows(z):
    """Numerically stable log-softmax of each row (max subtracted first)."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class _CrossEntropyIndex(Function):
    """Cross entropy with integer class indices; backward from the saved softmax."""

    @staticmethod
    def forward(ctx, x, target, weight, axis, ignore_index, reduction, label_smoothing):
        z, moved = _to_rows(x, axis)
        m, c = z.shape
        eps = label_smoothing
        logp = _log_softmax_rows(z)
        t = target.reshape(m)
        valid = t != ignore_index
        tc = np.where(valid, t, 0).astype(np.intp)
        picked = logp[np.arange(m), tc]
        w_t = valid.astype(x.dtype) if weight is None else np.where(valid, weight[tc], 0)
        loss = -w_t * picked
        if eps > 0:
            smooth = -(logp.sum(axis=1) if weight is None else logp @ weight)
            loss = (1 - eps) * loss + (eps / c) * np.where(valid, smooth, 0)
        denom = w_t.sum()
        out = _reduce(loss.astype(x.dtype, copy=False), reduction, denom, target.shape)
        ctx.save_for_backward(np.exp(logp), tc, valid, w_t, weight,
                              logp if ctx.needs_input_grad[2] else None)
        ctx.settings = (axis, moved, reduction, eps, denom, loss.sum())
        return out

    @staticmethod
    def backward(ctx, grad_out):
        p, tc, valid, w_t, weight, logp = ctx.saved_tensors
        axis, moved, reduction, eps, denom, total = ctx.settings
        m, c = p.shape
        s = _per_sample_scale(grad_out, reduction, denom, m, p.dtype, valid)
        rows = np.arange(m)
        gx = gw = None
        if ctx.needs_input_grad[0]:
            # d loss_i / d z_ic = (1-e) w_t (p_ic - [c = t_i]) + e/C v_i (p_ic sum(w) - w_c)
            hard = (1 - eps) * s * w_t
            soft = (eps / c) * s
            w_sum = c if weight is None else weight.sum()
            g = p * (hard + soft * w_sum)[:, None]
            g[rows, tc] -= hard
            if eps > 0:
                g -= soft[:, None] * (1 if weight is None else weight[None, :])
            gx = _from_rows(g, moved, axis)
        if ctx.needs_input_grad[2]:
            # d loss_i / d w_c = v_i ((1-e) (-log p_it) [c = t_i] + e/C (-log p_ic))
            gw = np.bincount(tc, weights=(1 - eps) * s * -logp[rows, tc], minlength=c)
            gw = gw + (eps / c) * (s @ -logp)
            if reduction == "mean":   # the divisor sum_i v_i w[t_i] depends on w too
                with np.errstate(invalid="ignore", divide="ignore"):
                    gw = gw - np.asarray(grad_out).reshape(()) * total / denom ** 2 * \
                        np.bincount(tc, weights=valid, minlength=c)
        return gx, None, gw


class _CrossEntropyProb(Function):
    """Cross entropy with class-probability targets (differentiable in both)."""

    @staticmethod
    def forward(ctx, x, target, weight, axis, reduction, label_smoothing):
        z, moved = _to_rows(x, axis)
        m, c = z.shape
        eps = label_smoothing
        logp = _log_softmax_rows(z)
        q, _ = _to_rows(target, axis)
        if eps > 0:
            q = q * (1 - eps) + eps / c
        wq = q if weight is None else q * weight
        loss = -(wq * logp).sum(axis=1)
        out = _reduce(loss, reduction, m, moved[:-1])
        ctx.save_for_backward(np.exp(logp), wq, logp, q, weight)
        ctx.settings = (axis, moved, reduction, eps)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        p, wq, logp, q, weight = ctx.saved_tensors
        axis, moved, reduction, eps = ctx.settings
        m, c = p.shape
        s = _per_sample_scale(grad_out, reduction, m, m, p.dtype)[:, None]
        gx = gt = gw = None
        if ctx.needs_input_grad[0]:
            gx = _from_rows(s * (p * wq.sum(axis=1, keepdims=True) - wq), moved, axis)
        if ctx.needs_input_grad[1]:
            w = 1 if weight is None else weight
            gt = _from_rows(-(1 - eps) * s * w * logp, moved, axis)
        if ctx.needs_input_grad[2]:
            gw = -(s * q * logp).sum(axis=0)
        return gx, gt, gw


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross entropy between logits and targets, as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : Tensor or ndarray, (N, C), (N, C, d1, ...) or (C,), float32 or float64
        Unnormalised logits; log-softmax is taken over the class dim with the max subtracted
        first, so logits of any magnitude give finite losses.
    target : int array of class indices, shape (N,) / (N, d1, ...) / (), or a float array
        of class probabilities of the input's shape (then differentiable too).
    weight : Tensor or ndarray, (C,), optional
        Per-class rescaling weight (differentiable).
    ignore_index : int
        Class-index targets equal to it contribute nothing (neither to the mean's divisor).
    reduction : {"mean", "sum", "none"}
        "mean" divides by the summed weights of the non-ignored targets (by the number of
        samples for probability targets); "none" returns the per-sample losses.
    label_smoothing : float in [0, 1]
        Mixes the target with the uniform distribution:
        ``(1 - e) * nll + e * mean over classes of -w_c log p_c``.

    Returns
    -------
    Tensor: 0-D, or of the target's shape (without the class dim) for ``reduction="none"``.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> logits = fc.tensor(np.zeros((2, 4)), requires_grad=True)
    >>> loss = fc.functional.cross_entropy(logits, np.array([1, 3]))
    >>> round(float(loss), 4)   # log(4)
    1.3863
    """
    op = "cross_entropy"
    check_float(op, "input", input)
    x = data_of(input)
    axis = _class_axis(op, x)
    _check_reduction(op, reduction)
    if not isinstance(label_smoothing, numbers.Real) or isinstance(label_smoothing, bool):
        raise TypeError(f"{op}: expected label_smoothing to be a float, got "
                        f"{label_smoothing!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: expected label_smoothing in [0, 1], got {label_smoothing}")
    ignore_index = _check_index_like(op, "ignore_index", ignore_index)
    t = data_of(target)
    _check_weight(op, weight, x.shape[axis])
    eps = float(label_smoothing)
    if t.dtype.kind in "iu":
        check_same_dtype(op, {"input": input, "weight": weight})
        _check_index_target(op, x, axis, t, ignore_index)
        return _CrossEntropyIndex.apply(input, target, weight, axis=axis,
                                        ignore_index=ignore_index, reduction=reduction,
                                        label_smoothing=eps)
    if t.dtype.kind == "f":
        check_same_dtype(op, {"input": input, "target": target, "weight": weight})
        if t.shape != x.shape:
            raise ValueError(f"{op}: expected float (class-probability) target of the "
                             f"input's shape {tuple(x.shape)}, got {tuple(t.shape)}; for "
                             f"class indices pass an integer array")
        return _CrossEntropyProb.apply(input, target, weight, axis=axis, reduction=reduction,
                                       label_smoothing=eps)
    raise TypeError(f"{op}: expected target to be an integer array of class indices (or a "
                    f"float array of class probabilities of the input's shape), got dtype "
                    f"{t.dtype}")


# ------------------------------------------------------------------------------ nll

class _NllLoss(Function):
    """-w[t_i] * input[i, t_i] over the (M, C) view of log-probabilities."""

    @staticmethod
    def forward(ctx, x, target, weight, axis, ignore_index, reduction):
        z, moved = _to_rows(x, axis)
        m, c = z.shape
        t = target.reshape(m)
        valid = t != ignore_index
        tc = np.where(valid, t, 0).astype(np.intp)
        picked = z[np.arange(m), tc]
        w_t = valid.astype(x.dtype) if weight is None else np.where(valid, weight[tc], 0)
        loss = (-w_t * picked).astype(x.dtype, copy=False)
        denom = w_t.sum()
        ctx.save_for_backward(tc, valid, w_t, picked if ctx.needs_input_grad[2] else None)
        ctx.settings = (axis, moved, reduction, denom, loss.sum(), x.dtype)
        return _reduce(loss, reduction, denom, target.shape)

    @staticmethod
    def backward(ctx, grad_out):
        tc, valid, w_t, picked = ctx.saved_tensors
        axis, moved, reduction, denom, total, dtype = ctx.settings
        m, c = len(tc), moved[-1]
        s = _per_sample_scale(grad_out, reduction, denom, m, dtype, valid)
        gx = gw = None
        if ctx.needs_input_grad[0]:
            g = np.zeros((m, c), dtype=dtype)
            g[np.arange(m), tc] = -s * w_t
            gx = _from_rows(g, moved, axis)
        if ctx.needs_input_grad[2]:
            gw = np.bincount(tc, weights=s * -picked, minlength=c)
            if reduction == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    gw = gw - np.asarray(grad_out).reshape(()) * total / denom ** 2 * \
                        np.bincount(tc, weights=valid, minlength=c)
        return gx, None, gw


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``.

    ``loss_i = -weight[t_i] * input[i, t_i]`` (0 where ``t_i == ignore_index``); "mean"
    divides by the summed weights of the non-ignored targets. ``cross_entropy(x, t)`` equals
    ``nll_loss(log_softmax(x), t)``.

    Parameters
    ----------
    input : (N, C), (N, C, d1, ...) or (C,), float32 or float64 log-probabilities
    target : int array, (N,), (N, d1, ...) or (), values in [0, C) or ignore_index
    weight : (C,), optional
    ignore_index : int
    reduction : {"mean", "sum", "none"}

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> float(fc.functional.nll_loss(np.log(np.full((2, 4), 0.25)), np.array([0, 1])))
    1.3862943611198906
    """
    op = "nll_loss"
    check_float(op, "input", input)
    x = data_of(input)
    axis = _class_axis(op, x)
    _check_reduction(op, reduction)
    ignore_index = _check_index_like(op, "ignore_index", ignore_index)
    t = data_of(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: expected target to be an integer array of class indices, got "
                        f"dtype {t.dtype}")
    _check_weight(op, weight, x.shape[axis])
    check_same_dtype(op, {"input": input, "weight": weight})
    _check_index_target(op, x, axis, t, ignore_index)
    return _NllLoss.apply(input, target, weight, axis=axis, ignore_index=ignore_index,
                          reduction=reduction)


# ---------------------------------------------------------------------- regression

class _PointwiseLoss(Function):
    """Elementwise loss of d = input - target: d^2 (squared) or |d|, then reduced."""

    @staticmethod
    def forward(ctx, x, target, squared, reduction):
        # C order: the reductions below then sum in the same order for any input layout
        d = np.subtract(x, target, order="C")
        loss = d * d if squared else np.abs(d)
        ctx.save_for_backward(d)
        ctx.settings = (squared, reduction)
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(loss.sum() / loss.size, dtype=loss.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (d,) = ctx.saved_tensors
        squared, reduction = ctx.settings
        g = np.asarray(grad_out, dtype=d.dtype)
        if reduction == "mean":
            with np.errstate(divide="ignore", invalid="ignore"):   # empty: no elements
                g = g / d.size
        g = g * (2 * d if squared else np.sign(d))
        return (g if ctx.needs_input_grad[0] else None), (-g if ctx.needs_input_grad[1]
                                                          else None)


def _pointwise(op, input, target, reduction, squared):
    check_float(op, "input", input)
    check_float(op, "target", target)
    _check_reduction(op, reduction)
    xs, ts = data_of(input).shape, data_of(target).shape
    if xs != ts:
        raise ValueError(f"{op}: expected target of the input's shape {tuple(xs)}, got "
                         f"{tuple(ts)} (PyTorch would broadcast with a warning; reshape "
                         f"explicitly if broadcasting is intended)")
    return _PointwiseLoss.apply(input, target, squared=squared, reduction=reduction)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error, as ``torch.nn.functional.mse_loss``: ``(input - target)^2`` then
    the reduction ("mean" over all elements, "sum" or "none").

    ``input`` and ``target`` must have the same shape (a ValueError where PyTorch only warns
    and broadcasts); float dtypes promote as NumPy. Differentiable w.r.t. both.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> float(fc.functional.mse_loss(np.zeros(4), np.full(4, 2.0)))
    4.0
    """
    return _pointwise("mse_loss", input, target, reduction, True)


def l1_loss(input, target, reduction="mean"):
    """Mean absolute error, as ``torch.nn.functional.l1_loss``: ``|input - target|`` then
    the reduction. The gradient at ``input == target`` is 0 (as PyTorch). Same shape rule
    as :func:`mse_loss`.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> float(fc.functional.l1_loss(np.zeros(4), np.full(4, 2.0)))
    2.0
    """
    return _pointwise("l1_loss", input, target, reduction, False)
