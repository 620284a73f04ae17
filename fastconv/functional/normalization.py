"""Batch normalisation: ``batch_norm``, as ``torch.nn.functional.batch_norm``, and
``batch_norm_relu`` (``relu(batch_norm(...))`` in one op, for the BatchNorm2d + ReLU pairs of
the models).

Validation happens here, once; ``_BatchNorm`` assumes valid input and calls
``fastconv._ext.batchnorm2d``, whose kernels take a C-contiguous (N, C, L) array, so (N, C),
(N, C, L) and NCHW inputs share one code path.
"""
import numbers

import numpy as np

from .._config import threads_for
from .._ext import batchnorm2d as _kernel
from ..autograd import Function
from . import activation as _activation
from ._args import check_float, check_same_dtype, data_of, kernel_ready

__all__ = ["batch_norm", "batch_norm_relu"]

_EMPTY1 = {np.dtype(np.float32): np.empty(0, np.float32),
           np.dtype(np.float64): np.empty(0, np.float64)}
_EMPTY3 = {np.dtype(np.float32): np.empty((0, 0, 0), np.float32),
           np.dtype(np.float64): np.empty((0, 0, 0), np.float64)}

# Planes shorter than this (BatchNorm1d on (N, C) has L = 1) are regrouped channel-major,
# (1, C, N*L), so each channel is one contiguous run for the kernel instead of N tiny ones.
_SMALL_PLANE = 64


def _swap01(a):
    """(A, B, L) -> C-contiguous (B, A, L). NumPy's strided copy is fast for single values
    (L = 1: a 2-D transpose) but runs far below memory speed on short runs of L >= 4 values,
    which the kernel copies whole (measured on BatchNorm of (64, 256, 4, 4): 2.2x)."""
    if a.shape[2] < 4:
        return np.ascontiguousarray(a.transpose(1, 0, 2))
    out = np.empty((a.shape[1], a.shape[0], a.shape[2]), a.dtype)
    _kernel.swap01(kernel_ready(a), out, threads_for(out.size))
    return out


def _to_kernel(a, shape3, regroup):
    """An (N, C, *) array as the C-contiguous (N, C, L) or, regrouped, (1, C, N*L) array."""
    a = a.reshape(shape3)
    if regroup:
        n, c, l = shape3
        return _swap01(a).reshape(1, c, n * l)
    return kernel_ready(a)


def _from_kernel(a, shape3, regroup):
    if regroup:
        n, c, l = shape3
        return _swap01(a.reshape(c, n, l))
    return a


def _writable_stat(a):
    """A C-contiguous buffer the kernel may update in place, and whether to copy it back."""
    if a.flags.c_contiguous and a.flags.writeable:
        return a, False
    return np.ascontiguousarray(a), True


class _BatchNorm(Function):
    """y = (x - mean) * invstd * weight + bias per channel; saves x, the mean and invstd.
    With ``relu``, y = max(y, 0) in the same pass over the data; the backward masks the
    output gradient inside the kernel's passes (training: the normalised values recomputed
    from x, bit for bit the forward's) instead of a separate relu pass."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps,
                relu=False):
        shape = x.shape
        n, c = shape[0], shape[1]
        shape3 = (n, c, x.size // (n * c) if n * c else 0)
        regroup = shape3[2] < _SMALL_PLANE and n > 1
        x3 = _to_kernel(x, shape3, regroup)
        dt = x3.dtype
        w = _EMPTY1[dt] if weight is None else kernel_ready(weight)
        b = _EMPTY1[dt] if bias is None else kernel_ready(bias)
        out = np.empty_like(x3)
        n_threads = threads_for(out.size)
        if training:
            mean, invstd = np.empty(c), np.empty(c)
            if x.size:
                rm, copy_rm = (_EMPTY1[dt], False) if running_mean is None else \
                    _writable_stat(running_mean)
                rv, copy_rv = (_EMPTY1[dt], False) if running_var is None else \
                    _writable_stat(running_var)
                _kernel.forward_train(x3, w, b, float(eps), out, mean, invstd, rm, rv,
                                      float(momentum), n_threads, relu=relu)
                if copy_rm:
                    running_mean[...] = rm
                if copy_rv:
                    running_var[...] = rv
        else:
            mean = invstd = None    # only backward reads them: not worked out without a graph
            if any(ctx.needs_input_grad):
                mean = np.asarray(running_mean, np.float64)
                invstd = 1.0 / np.sqrt(np.asarray(running_var, np.float64) + eps)
            _kernel.forward_eval(x3, kernel_ready(running_mean), kernel_ready(running_var), w,
                                 b, float(eps), out, n_threads, relu=relu)
        # eval + relu: the backward masks by the output (the next layer holds it anyway)
        ctx.save_for_backward(x3, w, b, mean, invstd,
                              out if relu and not training else None)
        ctx.layout = (shape, shape3, regroup, bool(training), relu)
        return _from_kernel(out, shape3, regroup).reshape(shape)

    @staticmethod
    def backward(ctx, grad_out):
        x3, w, b, mean, invstd, out = ctx.saved_tensors
        shape, shape3, regroup, training, relu = ctx.layout
        dt = x3.dtype
        gy3 = _to_kernel(grad_out.astype(dt, copy=False), shape3, regroup)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = np.empty_like(x3) if need_x else _EMPTY3[dt]
        gw = np.empty(shape3[1], dt) if need_w else _EMPTY1[dt]
        gb = np.empty(shape3[1], dt) if need_b else _EMPTY1[dt]
        if training:
            _kernel.backward(gy3, x3, w, mean, invstd, gx, gw, gb, threads_for(gx.size), bias=b,
                             relu=relu)
        else:
            if relu:
                gy3 = _activation._elementwise("relu_backward", gy3, out)
            _kernel.backward_eval(gy3, x3, w, mean, invstd, gx, gw, gb, threads_for(gx.size))
        gx = _from_kernel(gx, shape3, regroup).reshape(shape) if need_x else None
        return gx, gw if need_w else None, gb if need_b else None


def _check_number(op, name, value):
    if type(value) is float:    # the usual case, without the ABC check below
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: expected {name} to be a float, got {value!r}")
    return float(value)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation over the channel axis 1, as ``torch.nn.functional.batch_norm``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel. In training the mean and
    biased variance are the batch's (over every axis but 1) and the running statistics, when
    given, are updated in place: ``r = (1 - momentum) * r + momentum * batch_stat``, with the
    unbiased variance ``n / (n - 1) * var`` for ``running_var``. In eval the running
    statistics are used and left unchanged.

    Parameters
    ----------
    input : Tensor or ndarray, (N, C), (N, C, L) or (N, C, H, W), float32 or float64
    running_mean, running_var : ndarray (C,) or None
        Buffers of input's dtype, updated in place in training. Required in eval; may both be
        None in training (batch statistics only).
    weight, bias : Tensor or ndarray (C,), optional
        Scale and shift (1 and 0 when omitted); differentiable.
    training : bool
    momentum : float
    eps : float

    Returns
    -------
    Tensor of input's shape and dtype.

    Raises
    ------
    ValueError
        Bad shapes; training with one value per channel (N * L == 1); eval without running
        statistics.
    TypeError
        Non-float operands or operands of different dtypes.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> from fastconv.functional.normalization import batch_norm
    >>> x = fc.tensor(np.random.rand(8, 3, 4, 4).astype(np.float32), requires_grad=True)
    >>> rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    >>> y = batch_norm(x, rm, rv, training=True)
    >>> y.shape, bool(np.all(rm != 0))
    ((8, 3, 4, 4), True)
    """
    return _batch_norm("batch_norm", input, running_mean, running_var, weight, bias, training,
                       momentum, eps, relu=False)


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.1, eps=1e-5):
    """``relu(batch_norm(input, ...))`` as one op: the same values and gradients bit for bit
    (tested), with relu applied inside BatchNorm's normalising pass and its mask inside
    BatchNorm's backward passes, so neither relu pass runs. The arguments, errors and
    running-statistics updates are :func:`batch_norm`'s. ``BatchNorm2d`` followed by ``ReLU``
    in an ``nn.Sequential`` or a model's block runs through this
    (``fastconv.nn.layers.fused``).

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> from fastconv.functional.normalization import batch_norm_relu
    >>> x = fc.tensor(np.random.randn(8, 3, 4, 4).astype(np.float32))
    >>> rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    >>> float(batch_norm_relu(x, rm, rv, training=True).data.min())
    0.0
    """
    return _batch_norm("batch_norm_relu", input, running_mean, running_var, weight, bias,
                       training, momentum, eps, relu=True)


def _batch_norm(op, input, running_mean, running_var, weight, bias, training, momentum, eps,
                relu):
    xd = data_of(input)
    if xd.ndim not in (2, 3, 4):
        raise ValueError(f"{op}: expected input to be 2-D, 3-D or 4-D (N, C, ...), got "
                         f"{xd.ndim}-D with shape {tuple(xd.shape)}")
    check_float(op, "input", xd)
    named = {"input": xd}
    for name, value in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                        ("running_var", running_var)):
        named[name] = None if value is None else data_of(value)
    check_same_dtype(op, named)
    c = xd.shape[1]
    for name in ("weight", "bias", "running_mean", "running_var"):
        value = named[name]
        if value is not None and value.shape != (c,):
            raise ValueError(f"{op}: expected {name} of shape ({c},) (one per channel of "
                             f"input {tuple(xd.shape)}), got {tuple(value.shape)}")
    momentum = _check_number(op, "momentum", momentum)
    eps = _check_number(op, "eps", eps)
    if eps < 0:
        raise ValueError(f"{op}: expected eps >= 0, got {eps}")
    rm, rv = named["running_mean"], named["running_var"]
    if training:
        if xd.size // max(c, 1) == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got "
                             f"input size {tuple(xd.shape)}")
        for name, stat in (("running_mean", rm), ("running_var", rv)):
            if stat is not None and not stat.flags.writeable:
                raise ValueError(f"{op}: expected {name} to be writable: it is updated in "
                                 f"place in training, got a read-only array")
    elif rm is None or rv is None:
        raise ValueError(f"{op}: expected running_mean and running_var in eval mode "
                         f"(training=False), got None")
    return _BatchNorm.apply(input, weight, bias, running_mean=rm, running_var=rv,
                            training=bool(training), momentum=momentum, eps=eps, relu=relu)
