"""Plain NumPy reference for the activations, softmax and log-softmax, forward and backward.

Written for clarity: the oracle for ``fastconv._ext.activations`` and the functional ops, and
the baseline ``bench/`` measures them against. Imports only NumPy. Backward functions take the
gradient of the output and return the gradient of the input (and of PReLU's weight).
"""
import numpy as np

__all__ = [
    "relu", "relu_backward",
    "leaky_relu", "leaky_relu_backward",
    "elu", "elu_backward",
    "prelu", "prelu_backward",
    "sigmoid", "sigmoid_backward",
    "tanh", "tanh_backward",
    "softmax", "softmax_backward",
    "log_softmax", "log_softmax_backward",
]


def relu(x):
    """max(x, 0); NaN stays NaN."""
    return np.where(x < 0, np.zeros_like(x), x)


def relu_backward(grad_out, x):
    """grad_out where x > 0, else 0 (the derivative at 0 is taken as 0, as PyTorch)."""
    return np.where(x > 0, grad_out, np.zeros_like(grad_out))


def leaky_relu(x, negative_slope=0.01):
    return np.where(x < 0, x * np.asarray(negative_slope, x.dtype), x)


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    return np.where(x > 0, grad_out, grad_out * np.asarray(negative_slope, grad_out.dtype))


def elu(x, alpha=1.0):
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype)


def elu_backward(grad_out, x, alpha=1.0):
    """grad_out if x > 0 else grad_out * alpha * exp(x)."""
    return np.where(x > 0, grad_out,
                    grad_out * alpha * np.exp(np.minimum(x, 0))).astype(grad_out.dtype)


def _channel_weight(weight, ndim):
    """PReLU weight (C,) or (1,) -> broadcastable against an (N, C, *) input."""
    return np.asarray(weight).reshape((1, -1) + (1,) * (ndim - 2))


def prelu(x, weight):
    """x if x >= 0 else weight[c] * x; weight (C,) over axis 1, or (1,) shared."""
    return np.where(x < 0, x * _channel_weight(weight, x.ndim), x).astype(x.dtype)


def prelu_backward(grad_out, x, weight):
    """Returns (grad_input, grad_weight); grad_weight has weight's shape."""
    w = _channel_weight(weight, x.ndim)
    gx = np.where(x > 0, grad_out, grad_out * w).astype(x.dtype)
    contrib = np.where(x > 0, 0, grad_out.astype(np.float64) * x)
    axes = (0,) + tuple(range(2, x.ndim))
    gw = contrib.sum(axis=axes) if np.size(weight) > 1 else np.array([contrib.sum()])
    return gx, gw.astype(np.asarray(weight).dtype)


def sigmoid(x):
    """1 / (1 + exp(-x)), without overflow: exp is only taken of -|x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def sigmoid_backward(grad_out, y):
    """From the OUTPUT y: grad_out * y * (1 - y)."""
    return grad_out * y * (1 - y)


def tanh(x):
    return np.tanh(x)


def tanh_backward(grad_out, y):
    """From the OUTPUT y: grad_out * (1 - y^2)."""
    return grad_out * (1 - y * y)


def softmax(x, dim):
    """exp(x - max) / sum(exp(x - max)) along ``dim`` (stable for large logits)."""
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def softmax_backward(grad_out, y, dim):
    """From the OUTPUT y: y * (grad_out - sum(grad_out * y))."""
    return y * (grad_out - (grad_out * y).sum(axis=dim, keepdims=True))


def log_softmax(x, dim):
    """(x - max) - log(sum(exp(x - max))) along ``dim``."""
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def log_softmax_backward(grad_out, y, dim):
    """From the OUTPUT y = log_softmax(x): grad_out - exp(y) * sum(grad_out)."""
    return grad_out - np.exp(y) * grad_out.sum(axis=dim, keepdims=True)
