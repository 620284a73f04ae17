"""Plain NumPy reference for batch normalisation (training and eval), forward and backward.

Written for clarity: the oracle for ``fastconv._ext.batchnorm2d`` and the baseline ``bench/``
measures it against. Imports only NumPy. Inputs are (N, C, *) arrays: (N, C), (N, C, L) or
NCHW; statistics are per channel over every other axis. Results have the input's dtype, with
statistics computed in float64 (the tightest oracle).
"""
import numpy as np

__all__ = [
    "batch_norm_stats",
    "batch_norm_train",
    "batch_norm_eval",
    "update_running_stats",
    "batch_norm_backward",
    "batch_norm_eval_backward",
]


def _axes(x):
    """Every axis but the channel axis 1."""
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, ndim):
    """(C,) -> (1, C, 1, ...) to broadcast against an ndim-D input."""
    return np.asarray(v).reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm_stats(x):
    """Per-channel batch mean and biased variance (float64, two-pass)."""
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=_axes(x))
    var = ((x64 - _per_channel(mean, x.ndim)) ** 2).mean(axis=_axes(x))
    return mean, var


def batch_norm_train(x, weight=None, bias=None, eps=1e-5):
    """Training-mode forward with batch statistics.

    Returns
    -------
    y : ndarray, x's shape and dtype
    mean, invstd : float64 (C,), the batch mean and 1 / sqrt(biased var + eps)
    """
    mean, var = batch_norm_stats(x)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x.astype(np.float64) - _per_channel(mean, x.ndim)) * _per_channel(invstd, x.ndim)
    y = xhat
    if weight is not None:
        y = y * _per_channel(np.asarray(weight, np.float64), x.ndim)
    if bias is not None:
        y = y + _per_channel(np.asarray(bias, np.float64), x.ndim)
    return y.astype(x.dtype), mean, invstd


def update_running_stats(x, running_mean, running_var, momentum=0.1):
    """PyTorch's update, in place: r = (1 - momentum) * r + momentum * batch_stat, with the
    UNBIASED variance n / (n - 1) * var for running_var. Either may be None."""
    mean, var = batch_norm_stats(x)
    n = x.size // x.shape[1]
    if running_mean is not None:
        running_mean[...] = (momentum * mean
                             + (1 - momentum) * running_mean.astype(np.float64))
    if running_var is not None:
        running_var[...] = (momentum * var * n / (n - 1)
                            + (1 - momentum) * running_var.astype(np.float64))


def batch_norm_eval(x, running_mean, running_var, weight=None, bias=None, eps=1e-5):
    """Eval-mode forward: (x - running_mean) / sqrt(running_var + eps) * weight + bias."""
    mean = np.asarray(running_mean, np.float64)
    invstd = 1.0 / np.sqrt(np.asarray(running_var, np.float64) + eps)
    y = (x.astype(np.float64) - _per_channel(mean, x.ndim)) * _per_channel(invstd, x.ndim)
    if weight is not None:
        y = y * _per_channel(np.asarray(weight, np.float64), x.ndim)
    if bias is not None:
        y = y + _per_channel(np.asarray(bias, np.float64), x.ndim)
    return y.astype(x.dtype)


def batch_norm_backward(grad_out, x, weight=None, eps=1e-5):
    """Training-mode gradients (the batch statistics depend on x).

    With xhat = (x - mean) * invstd and M values per channel:
    grad_input = weight * invstd * (gy - mean(gy) - xhat * mean(gy * xhat)),
    grad_weight = sum(gy * xhat), grad_bias = sum(gy).

    Returns
    -------
    grad_input (x's dtype), grad_weight, grad_bias (float64, (C,))
    """
    axes, nd = _axes(x), x.ndim
    mean, var = batch_norm_stats(x)
    invstd = 1.0 / np.sqrt(var + eps)
    gy = np.asarray(grad_out, np.float64)
    xhat = (x.astype(np.float64) - _per_channel(mean, nd)) * _per_channel(invstd, nd)
    w = np.ones(x.shape[1]) if weight is None else np.asarray(weight, np.float64)
    grad_bias = gy.sum(axis=axes)
    grad_weight = (gy * xhat).sum(axis=axes)
    m = x.size // x.shape[1]
    gx = _per_channel(w * invstd, nd) * (gy - _per_channel(grad_bias / m, nd)
                                         - xhat * _per_channel(grad_weight / m, nd))
    return gx.astype(x.dtype), grad_weight, grad_bias


def batch_norm_eval_backward(grad_out, x, running_mean, running_var, weight=None, eps=1e-5):
    """Eval-mode gradients (fixed statistics): grad_input = gy * weight * invstd,
    grad_weight = sum(gy * xhat), grad_bias = sum(gy)."""
    axes, nd = _axes(x), x.ndim
    invstd = 1.0 / np.sqrt(np.asarray(running_var, np.float64) + eps)
    gy = np.asarray(grad_out, np.float64)
    xhat = (x.astype(np.float64) - _per_channel(running_mean, nd)) * _per_channel(invstd, nd)
    w = np.ones(x.shape[1]) if weight is None else np.asarray(weight, np.float64)
    gx = gy * _per_channel(w * invstd, nd)
    return gx.astype(x.dtype), (gy * xhat).sum(axis=axes), gy.sum(axis=axes)
