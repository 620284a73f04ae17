"""Activation layers: ``ReLU``, ``LeakyReLU``, ``PReLU``, ``ELU``, ``Sigmoid``, ``Tanh``,
``Softmax``, ``LogSoftmax``.

``inplace`` is accepted for PyTorch compatibility and ignored: the ops always return a new
Tensor (the autograd tape needs the input intact).
"""
import numbers

import numpy as np

from ... import functional as F
from ...tensor import Tensor
from .. import init
from ..module import Module
from ._utils import empty_parameter, positive_int

__all__ = ["ReLU", "LeakyReLU", "PReLU", "ELU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax"]


def _inplace(flag):
    return "inplace=True" if flag else ""


class ReLU(Module):
    """``max(x, 0)``."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.relu(input)

    def extra_repr(self):
        return _inplace(self.inplace)


class LeakyReLU(Module):
    """``x`` where positive, ``negative_slope * x`` elsewhere."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace
                                                          else "")


class PReLU(Module):
    """Leaky ReLU with a learned slope: ``weight`` of shape (num_parameters,) (1: shared
    by every channel, else one per channel of dim 1), initialised to ``init``."""

    def __init__(self, num_parameters=1, init=0.25, dtype=None):
        super().__init__()
        self.num_parameters = positive_int("PReLU", "num_parameters", num_parameters)
        if isinstance(init, bool) or not isinstance(init, numbers.Real):
            raise TypeError(f"PReLU: expected init to be a float, got {init!r}")
        self.init = init
        self.weight = empty_parameter((num_parameters,), dtype)
        self.reset_parameters()

    def reset_parameters(self):
        init.constant_(self.weight, self.init)

    def forward(self, input):
        return F.prelu(input, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class ELU(Module):
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input):
        return F.elu(input, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Sigmoid(Module):
    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    def forward(self, input):
        return F.tanh(input)


def _softmax_dim(dim, input):
    # PyTorch's legacy implicit choice when dim is None.
    if dim is not None:
        return dim
    ndim = np.ndim(input.data if isinstance(input, Tensor) else input)
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """Softmax along ``dim`` (None: PyTorch's legacy implicit choice, 0 for 0/1/3-D input,
    else 1)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.softmax(input, _softmax_dim(self.dim, input))

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """Log-softmax along ``dim`` (None as :class:`Softmax`)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.log_softmax(input, _softmax_dim(self.dim, input))

    def extra_repr(self):
        return f"dim={self.dim}"
