"""Plain NumPy reference for the linear layer and the shape ops (flatten, cat, add).

``linear`` maps the last dim: ``y = x @ W.T + b`` for x of shape (*, in) and W of shape
(out, in). Gradients are the two transposed products and a sum over the leading dims.
Imports only NumPy.
"""
import numpy as np

__all__ = [
    "linear",
    "linear_backward_input",
    "linear_backward_weight",
    "linear_backward_bias",
    "flatten",
    "cat",
    "cat_backward",
    "add",
    "add_backward",
]


def linear(x, weight, bias=None):
    """(*, in) x (out, in) -> (*, out): ``x @ weight.T + bias``."""
    y = np.matmul(x, weight.T)
    return y if bias is None else y + bias


def linear_backward_input(grad_out, weight):
    """d/dx of ``sum(grad_out * linear(x, weight))``: ``grad_out @ weight``, (*, in)."""
    return np.matmul(grad_out, weight)


def linear_backward_weight(grad_out, x):
    """d/dW: the sum over every leading index of ``outer(grad_out[i], x[i])``, (out, in)."""
    m = int(np.prod(x.shape[:-1]))
    return grad_out.reshape(m, grad_out.shape[-1]).T @ x.reshape(m, x.shape[-1])


def linear_backward_bias(grad_out):
    """d/db: ``grad_out`` summed over every leading dim, (out,)."""
    return grad_out.reshape(int(np.prod(grad_out.shape[:-1])), grad_out.shape[-1]).sum(axis=0)


def flatten(x, start_dim=1, end_dim=-1):
    """Merge dims start_dim..end_dim (inclusive); its gradient is a reshape back."""
    if x.ndim == 0:
        return x.reshape(1)
    start, end = start_dim % x.ndim, end_dim % x.ndim
    merged = int(np.prod(x.shape[start:end + 1]))
    return x.reshape(x.shape[:start] + (merged,) + x.shape[end + 1:])


def cat(arrays, dim=0):
    """Concatenate along ``dim``."""
    return np.concatenate(arrays, axis=dim)


def cat_backward(grad_out, sizes, dim=0):
    """Split ``grad_out`` back into pieces of ``sizes`` along ``dim`` (one per input)."""
    pieces, start = [], 0
    index = [slice(None)] * grad_out.ndim
    for n in sizes:
        index[dim] = slice(start, start + n)
        pieces.append(grad_out[tuple(index)])
        start += n
    return pieces


def add(a, b, alpha=1):
    """``a + alpha * b`` with broadcasting."""
    return a + alpha * b


def _unbroadcast(g, shape):
    """Sum ``g`` over the axes along which an operand of ``shape`` was broadcast."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g


def add_backward(grad_out, a_shape, b_shape, alpha=1):
    """Gradients of ``add(a, b, alpha)`` w.r.t. a and b, at their own shapes."""
    return _unbroadcast(grad_out, tuple(a_shape)), _unbroadcast(alpha * grad_out, tuple(b_shape))
