"""Linear layer and shape ops: linear, flatten, cat, add.

``linear`` runs fastconv's own packed GEMM (``fastconv._ext.gemm``) on the (M, in) view of
the input, M = the product of the leading dims, for the forward pass and both gradients;
the GEMM parallelises over output tiles and is bit-identical for any thread count.
"""
import math
import numbers

import numpy as np

from .._config import threads_for
from .._ext import gemm as _gemm
from ..autograd import Function, add_arrays
from ..tensor import Reshape, Tensor
from ._args import check_ndim, check_same_dtype, data_of, kernel_ready

__all__ = ["linear", "flatten", "cat", "add"]


def _gemm_into(a, b, c, trans_a=False, trans_b=False, beta=0.0):
    k = a.shape[0] if trans_a else a.shape[-1]
    _gemm.gemm(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=1.0, beta=beta,
               n_threads=threads_for(macs=c.size * k))
    return c


class _Linear(Function):
    """y = x @ W^T + b over the flattened (M, in) input."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        out_f, in_f = weight.shape
        lead = x.shape[:-1]
        m = math.prod(lead)
        x2 = kernel_ready(x.reshape(m, in_f))
        w = kernel_ready(weight)
        y = np.empty((m, out_f), dtype=x.dtype)
        if bias is None:
            _gemm_into(x2, w, y, trans_b=True)
        else:
            y[...] = bias                       # the GEMM adds onto it (beta = 1)
            _gemm_into(x2, w, y, trans_b=True, beta=1.0)
        needs = ctx.needs_input_grad
        ctx.save_for_backward(x2 if needs[1] else None, w if needs[0] else None)
        ctx.shapes = (x.shape, m, out_f, in_f)
        return y.reshape(lead + (out_f,))

    @staticmethod
    def backward(ctx, grad_out):
        x2, w = ctx.saved_tensors
        x_shape, m, out_f, in_f = ctx.shapes
        g2 = kernel_ready(grad_out.reshape(m, out_f))
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _gemm_into(g2, w, np.empty((m, in_f), dtype=w.dtype)).reshape(x_shape)
        if ctx.needs_input_grad[1]:
            gw = _gemm_into(g2, x2, np.empty((out_f, in_f), dtype=x2.dtype), trans_a=True)
        if ctx.needs_input_grad[2]:
            gb = g2.sum(axis=0)
        return gx, gw, gb


def linear(input, weight, bias=None):
    """Affine map of the last dim: ``y = input @ weight.T + bias``, as PyTorch.

    Parameters
    ----------
    input : Tensor or ndarray, (*, in_features), float32 or float64
        Any number of leading dims (also none: a single vector).
    weight : Tensor or ndarray, (out_features, in_features), same dtype
    bias : Tensor or ndarray, (out_features,), optional, same dtype

    Returns
    -------
    Tensor (*, out_features)

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> x, w = np.ones((4, 3), np.float32), np.ones((2, 3), np.float32)
    >>> fc.functional.linear(x, w).shape
    (4, 2)
    """
    op = "linear"
    check_same_dtype(op, {"input": input, "weight": weight, "bias": bias})
    check_ndim(op, "weight", weight, (2,))
    xs, ws = data_of(input).shape, data_of(weight).shape
    if len(xs) < 1:
        raise ValueError(f"{op}: expected input with at least 1 dim (*, in_features), got a "
                         f"0-D input")
    if xs[-1] != ws[1]:
        raise ValueError(f"{op}: expected input's last dimension == weight.shape[1] "
                         f"({ws[1]}), got {xs[-1]} (input shape {tuple(xs)}, weight shape "
                         f"{tuple(ws)})")
    if bias is not None and data_of(bias).shape != (ws[0],):
        raise ValueError(f"{op}: expected bias of shape ({ws[0]},), got "
                         f"{tuple(data_of(bias).shape)}")
    return _Linear.apply(input, weight, bias)


def _check_int(op, name, value):
    if not isinstance(value, (numbers.Integral, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{op}: expected {name} to be an int, got {value!r}")
    return int(value)


def _wrap_dim(op, name, dim, ndim):
    dim = _check_int(op, name, dim)
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not lo <= dim <= hi:
        raise ValueError(f"{op}: expected {name} in [{lo}, {hi}] for a {ndim}-D input, "
                         f"got {dim}")
    return dim % max(ndim, 1)


def flatten(input, start_dim=1, end_dim=-1):
    """Merge dims ``start_dim`` .. ``end_dim`` (inclusive) into one, as ``torch.flatten``.

    The output has shape ``shape[:start_dim] + (prod(shape[start_dim:end_dim + 1]),) +
    shape[end_dim + 1:]``; a 0-D input becomes 1-D. Differentiable (a reshape).

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.functional.flatten(np.zeros((2, 3, 4, 5))).shape
    (2, 60)
    """
    op = "flatten"
    shape = data_of(input).shape
    nd = len(shape)
    start = _wrap_dim(op, "start_dim", start_dim, nd)
    end = _wrap_dim(op, "end_dim", end_dim, nd)
    if nd == 0:
        return Reshape.apply(input, shape=(1,))
    if start > end:
        raise ValueError(f"{op}: expected start_dim <= end_dim after wrapping negative dims, "
                         f"got start_dim={start_dim} ({start}), end_dim={end_dim} ({end})")
    new = shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
    return Reshape.apply(input, shape=new)


class _Cat(Function):
    """Concatenation along ``dim``; the gradient is split back into the pieces."""

    @staticmethod
    def forward(ctx, *arrays, dim):
        ctx.dim = dim
        ctx.bounds = np.cumsum([a.shape[dim] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, grad_out):
        pieces = np.split(grad_out, ctx.bounds, axis=ctx.dim)
        return tuple(p if need else None for p, need in zip(pieces, ctx.needs_input_grad))


def cat(tensors, dim=0):
    """Concatenate tensors along an existing dim, as ``torch.cat``.

    Parameters
    ----------
    tensors : sequence of Tensor or ndarray
        Non-empty; all of one ndim (>= 1) and the same shape except along ``dim``.
    dim : int
        Negative values count from the end.

    Returns
    -------
    Tensor whose ``dim`` is the sum of the inputs'; dtype by NumPy's promotion.
    Differentiable w.r.t. every Tensor input.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.functional.cat([np.zeros((2, 3)), np.ones((2, 5))], dim=1).shape
    (2, 8)
    """
    op = "cat"
    if isinstance(tensors, (Tensor, np.ndarray)) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: expected a list or tuple of tensors, got "
                        f"{type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty list of tensors, got an empty one")
    items = [t if isinstance(t, Tensor) else np.asarray(t) for t in tensors]
    shapes = [data_of(t).shape for t in items]
    for i, s in enumerate(shapes):
        if len(s) == 0:
            raise ValueError(f"{op}: expected tensors with at least 1 dim, got a 0-D tensor "
                             f"at position {i}")
        if len(s) != len(shapes[0]):
            raise ValueError(f"{op}: expected every tensor to have {len(shapes[0])} dims, got "
                             f"shape {s} at position {i} and {shapes[0]} at position 0")
    d = _wrap_dim(op, "dim", dim, len(shapes[0]))
    for i, s in enumerate(shapes):
        if s[:d] + s[d + 1:] != shapes[0][:d] + shapes[0][d + 1:]:
            raise ValueError(f"{op}: expected tensors of the same shape except along dim {d}, "
                             f"got {shapes[0]} at position 0 and {s} at position {i}")
    return _Cat.apply(*items, dim=d)


class _Add(Function):
    """input + alpha * other, broadcasting as NumPy."""

    @staticmethod
    def forward(ctx, a, b, alpha):
        ctx.alpha = alpha
        if alpha == 1 and isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            return add_arrays(a, b)
        # Python operator on purpose: a Python number times a Python alpha stays weakly typed
        return np.add(a, b if alpha == 1 else b * alpha)

    @staticmethod
    def backward(ctx, grad_out):
        gb = None
        if ctx.needs_input_grad[1]:
            gb = grad_out if ctx.alpha == 1 else grad_out * ctx.alpha
        return (grad_out if ctx.needs_input_grad[0] else None), gb


def _add_operand(x):
    """Tensors and Python numbers as they are (numbers stay weakly typed, so a float32
    tensor plus 2.5 stays float32), anything else as an ndarray."""
    if isinstance(x, (Tensor, numbers.Number)) and not isinstance(x, np.generic):
        return x
    return np.asarray(x)


def add(input, other, alpha=1):
    """``input + alpha * other``, as ``torch.add``: broadcasting, dtype promotion as NumPy,
    differentiable w.r.t. both.

    Parameters
    ----------
    input, other : Tensor, ndarray or number
    alpha : number
        Multiplier of ``other``; must be an int when both operands are integer arrays.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.functional.add(np.ones(3), np.ones(3), alpha=2).numpy()
    array([3., 3., 3.])
    """
    op = "add"
    if not isinstance(alpha, numbers.Number) or isinstance(alpha, (bool, np.bool_)):
        raise TypeError(f"{op}: expected alpha to be a number, got {alpha!r}")
    if isinstance(alpha, np.generic):
        alpha = alpha.item()   # a Python number, weakly typed like PyTorch's scalar alpha
    a, b = _add_operand(input), _add_operand(other)
    da, db = np.asarray(data_of(a)), np.asarray(data_of(b))
    if da.dtype.kind in "biu" and db.dtype.kind in "biu" and not isinstance(
            alpha, (numbers.Integral, np.integer)):
        raise TypeError(f"{op}: expected an integer alpha for integer inputs, got "
                        f"alpha={alpha!r} with dtypes {da.dtype} and {db.dtype}")
    try:
        np.broadcast_shapes(da.shape, db.shape)
    except ValueError:
        raise ValueError(f"{op}: expected broadcastable shapes, got {da.shape} and "
                         f"{db.shape}") from None
    return _Add.apply(a, b, alpha=alpha)
