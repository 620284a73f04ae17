"""Activations, softmax, log-softmax and dropout, as ``torch.nn.functional``.

Each op validates here and is one ``Function`` that saves the cheapest thing for backward
(ReLU, sigmoid, tanh, softmax, log-softmax: the output; leaky ReLU and ELU: the output when its
sign is the input's, else the input; PReLU: the input, needed for the weight gradient;
dropout: the boolean mask). Elementwise passes run the compiled ``fastconv._ext.activations``
kernel or NumPy, whichever was faster (measured table below): NumPy keeps the
transcendentals, which it vectorises.
"""
import math
import numbers

import numpy as np

from .._config import default_rng, threads_for
from .._ext import activations as _kernel
from ..autograd import Function
from ._args import check_float, check_ndim, check_same_dtype, data_of, kernel_ready
from .linear import add

__all__ = ["relu", "leaky_relu", "elu", "prelu", "sigmoid", "tanh", "softmax", "log_softmax",
           "dropout"]

# Kernel or NumPy, per pass: measured on (64, 64, 32, 32) float32, GB/s of bytes read and
# written, best of 40, on 2 shared cores (load from other jobs: the 2-thread column is noisy).
#   pass            NumPy                          kernel 1T   kernel 2T
#   relu            np.maximum(x, 0, out)   7.9    11.1        up to 22
#   relu backward   gy * (y > 0)            7.4    11.5        up to 22
#   leaky_relu      np.where                0.9    10.2        up to 18
#   sigmoid bwd     gy * y * (1 - y)        2.5     9.2        up to 18
#   tanh bwd        gy * (1 - y * y)        2.7     9.6        up to 17
#   tanh            np.tanh (SIMD)          8.6    -- (a libm call per element is ~10x slower)
# So every pass uses the kernel except tanh's forward, and ELU's and sigmoid's forward take
# NumPy's SIMD expm1/exp and finish in the kernel (np.where mispredicts on random signs).


def _elementwise(name, *arrays, args=()):
    """``_kernel.<name>(*arrays, *args, out, n_threads)`` on flat C-contiguous views of
    same-shaped arrays; returns ``out``, shaped like the first."""
    arrays = [kernel_ready(a) for a in arrays]
    out = np.empty_like(arrays[0])
    getattr(_kernel, name)(*(a.reshape(-1) for a in arrays), *args, out.reshape(-1),
                           threads_for(out.size))
    return out


class _ReLU(Function):
    @staticmethod
    def forward(ctx, x):
        y = _elementwise("relu_forward", x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        (y,) = ctx.saved_tensors
        return _elementwise("relu_backward", grad_out.astype(y.dtype, copy=False), y)


class _AddReLU(Function):
    """relu(a + b) for two float arrays of one shape and dtype, in one pass; the backward is
    relu's (the mask from the output), the same gradient for both operands, as add's."""

    @staticmethod
    def forward(ctx, a, b):
        y = _elementwise("add_relu_forward", a, b)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        (y,) = ctx.saved_tensors
        g = _elementwise("relu_backward", grad_out.astype(y.dtype, copy=False), y)
        return (g if ctx.needs_input_grad[0] else None), (g if ctx.needs_input_grad[1] else None)


def add_relu(input, other):
    """``relu(add(input, other))``, as one op when both are float arrays or tensors of the
    same shape and dtype (one pass over the data instead of two; the same bits, tested), else
    the two ops. For the residual connections of the ResNet blocks."""
    a, b = data_of(input), data_of(other)
    if (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
            and a.dtype == b.dtype and a.dtype in (np.float32, np.float64)):
        return _AddReLU.apply(input, other)
    return relu(add(input, other))


class _LeakyReLU(Function):
    @staticmethod
    def forward(ctx, x, negative_slope):
        x = kernel_ready(x)
        y = _elementwise("leaky_relu_forward", x, args=(negative_slope,))
        # the output has the input's sign when the slope is >= 0: save it, x may be freed
        ctx.save_for_backward(y if negative_slope >= 0 else x)
        ctx.slope = negative_slope
        return y

    @staticmethod
    def backward(ctx, grad_out):
        (t,) = ctx.saved_tensors
        return _elementwise("leaky_relu_backward", grad_out.astype(t.dtype, copy=False), t,
                            args=(ctx.slope,))


def _expm1_neg(x):
    """expm1(min(x, 0)) with NumPy's SIMD expm1 (NaN propagates)."""
    t = np.asarray(np.minimum(x, 0))    # an ndarray also for a 0-d x
    return np.expm1(t, out=t)


def _exp_neg_abs(x):
    """exp(-|x|) with NumPy's SIMD exp: in (0, 1], never overflows."""
    e = np.asarray(np.abs(x))       # an ndarray also for a 0-d x (ufuncs give a scalar)
    np.negative(e, out=e)
    return np.exp(e, out=e)


class _ELU(Function):
    @staticmethod
    def forward(ctx, x, alpha):
        x = kernel_ready(x)
        y = _elementwise("elu_forward", x, _expm1_neg(x), args=(alpha,))
        ctx.from_output = alpha >= 0     # alpha * exp(x) = y + alpha, and x <= 0 iff y <= 0
        ctx.save_for_backward(y if ctx.from_output else x)
        ctx.alpha = alpha
        return y

    @staticmethod
    def backward(ctx, grad_out):
        (t,) = ctx.saved_tensors
        return _elementwise("elu_backward", grad_out.astype(t.dtype, copy=False), t,
                            args=(ctx.alpha, ctx.from_output))


def _prelu_view(a):
    """(N, C, *) -> C-contiguous (N, C, L); a 1-D (C,) input is one sample."""
    a = kernel_ready(a)
    if a.ndim == 1:
        return a.reshape(1, a.shape[0], 1)
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))  # not -1: N may be 0


class _PReLU(Function):
    @staticmethod
    def forward(ctx, x, weight):
        x3, w = _prelu_view(x), kernel_ready(weight)
        out = np.empty_like(x3)
        _kernel.prelu_forward(x3, w, out, threads_for(out.size))
        ctx.save_for_backward(x3, w)
        ctx.shape = x.shape
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad_out):
        x3, w = ctx.saved_tensors
        dt = x3.dtype
        gy3 = _prelu_view(grad_out.astype(dt, copy=False).reshape(ctx.shape))
        need_x, need_w = ctx.needs_input_grad[:2]
        gx = np.empty_like(x3) if need_x else np.empty((0, 0, 0), dt)
        planes = np.empty(x3.shape[:2]) if need_w else np.empty((0, 0))
        _kernel.prelu_backward(gy3, x3, w, gx, planes, threads_for(gx.size))
        gw = None
        if need_w:
            gw = planes.sum(axis=0)
            gw = (np.array([gw.sum()]) if w.shape[0] == 1 else gw).astype(dt)
        return (gx.reshape(ctx.shape) if need_x else None), gw


class _Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        y = _elementwise("sigmoid_forward", x, _exp_neg_abs(x))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        (y,) = ctx.saved_tensors
        return _elementwise("sigmoid_backward", grad_out.astype(y.dtype, copy=False), y)


class _Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        y = np.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        (y,) = ctx.saved_tensors
        return _elementwise("tanh_backward", grad_out.astype(y.dtype, copy=False), y)


class _Softmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        # initial=-inf: an empty reduction is fine (an empty input gives an empty output)
        e = np.exp(x - x.max(axis=dim, keepdims=True, initial=-np.inf))
        e /= e.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(e)
        ctx.dim = dim
        return e

    @staticmethod
    def backward(ctx, grad_out):
        (y,) = ctx.saved_tensors
        return y * (grad_out - (grad_out * y).sum(axis=ctx.dim, keepdims=True))


class _LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        shifted = x - x.max(axis=dim, keepdims=True, initial=-np.inf)
        with np.errstate(divide="ignore"):    # log(0) of an empty reduction
            y = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad_out):
        (y,) = ctx.saved_tensors
        return grad_out - np.exp(y) * grad_out.sum(axis=ctx.dim, keepdims=True)


class _Dropout(Function):
    @staticmethod
    def forward(ctx, x, p):
        keep = default_rng().random(x.shape, dtype=np.float32) >= p
        scale = x.dtype.type(1.0 / (1.0 - p))
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return np.where(keep, x * scale, x.dtype.type(0))

    @staticmethod
    def backward(ctx, grad_out):
        (keep,) = ctx.saved_tensors
        return np.where(keep, grad_out * ctx.scale, grad_out.dtype.type(0))


class _Zeros(Function):
    """dropout with p = 1: zeros, and a zero gradient."""

    @staticmethod
    def forward(ctx, x):
        return np.zeros_like(x)

    @staticmethod
    def backward(ctx, grad_out):
        return np.zeros_like(grad_out)


# ------------------------------------------------------------------------------ validation

def _check_input(op, x):
    check_float(op, "input", x)
    return data_of(x)


def _check_real(op, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: expected {name} to be a float, got {value!r}")
    return float(value)


def _normalize_dim(dim, ndim):
    """PyTorch's dim wrapping, with its IndexError for out-of-range dims."""
    if isinstance(dim, bool) or not isinstance(dim, (numbers.Integral, np.integer)):
        raise TypeError(f"expected dim to be an int, got {dim!r}")
    lo, hi = (-ndim, ndim - 1) if ndim > 0 else (-1, 0)
    if not lo <= dim <= hi:
        raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], "
                         f"but got {dim})")
    return int(dim) % max(ndim, 1)


# --------------------------------------------------------------------------------- public

def relu(input):
    """Rectified linear unit, ``max(x, 0)`` elementwise (NaN stays NaN).

    Parameters
    ----------
    input : Tensor or ndarray, float32 or float64, any shape

    Returns
    -------
    Tensor of input's shape and dtype.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> from fastconv.functional.activation import relu
    >>> relu(fc.tensor(np.array([-1.0, 2.0]))).numpy()
    array([0., 2.])
    """
    _check_input("relu", input)
    return _ReLU.apply(input)


def leaky_relu(input, negative_slope=0.01):
    """``x if x >= 0 else negative_slope * x`` elementwise.

    Parameters
    ----------
    input : Tensor or ndarray, float32 or float64
    negative_slope : float

    Returns
    -------
    Tensor of input's shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.functional.activation import leaky_relu
    >>> leaky_relu(np.array([-1.0, 2.0]), 0.1).numpy()
    array([-0.1,  2. ])
    """
    _check_input("leaky_relu", input)
    slope = _check_real("leaky_relu", "negative_slope", negative_slope)
    return _LeakyReLU.apply(input, negative_slope=slope)


def elu(input, alpha=1.0):
    """Exponential linear unit: ``x if x > 0 else alpha * (exp(x) - 1)``.

    Parameters
    ----------
    input : Tensor or ndarray, float32 or float64
    alpha : float

    Returns
    -------
    Tensor of input's shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.functional.activation import elu
    >>> elu(np.array([0.0, 1.0])).numpy()
    array([0., 1.])
    """
    _check_input("elu", input)
    return _ELU.apply(input, alpha=_check_real("elu", "alpha", alpha))


def prelu(input, weight):
    """Parametric ReLU: ``x if x >= 0 else weight[c] * x``, c the channel (axis 1).

    Parameters
    ----------
    input : Tensor or ndarray, (N, C, ...) or (C,), float32 or float64
    weight : Tensor or ndarray, (C,) one slope per channel, or (1,) shared; input's dtype

    Returns
    -------
    Tensor of input's shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.functional.activation import prelu
    >>> prelu(np.array([[-1.0, -1.0]]), np.array([0.1, 0.2])).numpy()
    array([[-0.1, -0.2]])
    """
    op = "prelu"
    check_same_dtype(op, {"input": input, "weight": weight})
    xd, wd = data_of(input), data_of(weight)
    check_ndim(op, "weight", weight, (1,))
    if xd.ndim == 0:
        raise ValueError(f"{op}: expected an input with at least 1 dimension, got a 0-D "
                         f"input (a scalar)")
    c = xd.shape[1] if xd.ndim >= 2 else xd.shape[0]
    if wd.shape[0] not in (1, c):
        raise ValueError(f"{op}: expected weight of size 1 or the number of channels "
                         f"(input.shape[1] = {c}), got {wd.shape[0]}")
    return _PReLU.apply(input, weight)


def sigmoid(input):
    """Logistic function ``1 / (1 + exp(-x))``, without overflow for large ``|x|``.

    Parameters
    ----------
    input : Tensor or ndarray, float32 or float64

    Returns
    -------
    Tensor of input's shape and dtype, in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.functional.activation import sigmoid
    >>> sigmoid(np.array([0.0])).numpy()
    array([0.5])
    """
    _check_input("sigmoid", input)
    return _Sigmoid.apply(input)


def tanh(input):
    """Hyperbolic tangent, elementwise.

    Parameters
    ----------
    input : Tensor or ndarray, float32 or float64

    Returns
    -------
    Tensor of input's shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.functional.activation import tanh
    >>> tanh(np.array([0.0])).numpy()
    array([0.])
    """
    _check_input("tanh", input)
    return _Tanh.apply(input)


def softmax(input, dim):
    """``exp(x) / sum(exp(x))`` along ``dim``, computed as ``exp(x - max)`` so large logits
    do not overflow.

    Parameters
    ----------
    input : Tensor or ndarray, float32 or float64
    dim : int
        Axis to normalise over; negative counts from the end.

    Returns
    -------
    Tensor of input's shape and dtype; sums to 1 along ``dim``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.functional.activation import softmax
    >>> softmax(np.array([[1e4, 1e4]]), dim=1).numpy()
    array([[0.5, 0.5]])
    """
    x = _check_input("softmax", input)
    return _Softmax.apply(input, dim=_normalize_dim(dim, x.ndim))


def log_softmax(input, dim):
    """``log(softmax(x))`` along ``dim``, computed as ``(x - max) - log(sum(exp(x - max)))``.

    Parameters
    ----------
    input : Tensor or ndarray, float32 or float64
    dim : int

    Returns
    -------
    Tensor of input's shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.functional.activation import log_softmax
    >>> log_softmax(np.array([[0.0, 0.0]]), dim=-1).numpy()
    array([[-0.69314718, -0.69314718]])
    """
    x = _check_input("log_softmax", input)
    return _LogSoftmax.apply(input, dim=_normalize_dim(dim, x.ndim))


def dropout(input, p=0.5, training=True):
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)``, so the expectation is unchanged. The mask comes from the generator
    :func:`fastconv.manual_seed` seeds. Identity when ``training`` is False or ``p == 0``;
    zeros when ``p == 1``.

    Parameters
    ----------
    input : Tensor or ndarray, float32 or float64
    p : float in [0, 1]
    training : bool

    Returns
    -------
    Tensor of input's shape and dtype.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> from fastconv.functional.activation import dropout
    >>> _ = fc.manual_seed(0)
    >>> y = dropout(np.ones((1000,), np.float32), p=0.5)
    >>> sorted(set(y.numpy().tolist()))
    [0.0, 2.0]
    """
    _check_input("dropout", input)
    p = _check_real("dropout", "p", p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p} "
                         f"(expected p in [0, 1])")
    if not training or p == 0.0:
        return _Identity.apply(input)
    if p == 1.0:
        return _Zeros.apply(input)
    return _Dropout.apply(input, p=p)


class _Identity(Function):
    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out
