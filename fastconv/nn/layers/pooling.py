"""Pooling layers: ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d``,
``AdaptiveMaxPool2d``, ``LPPool2d`` and ``SPP`` (spatial pyramid pooling)."""
from ... import functional as F
from ..module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "LPPool2d",
           "SPP"]


class MaxPool2d(Module):
    """Max pooling, as ``torch.nn.MaxPool2d``; ``stride`` defaults to ``kernel_size``.

    Output ``OH = floor((H + 2*padding - dilation*(k - 1) - 1) / stride) + 1`` (ceil with
    ``ceil_mode``). With ``return_indices`` it returns ``(output, indices)``.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.nn.MaxPool2d(2)(fc.tensor(np.zeros((1, 3, 8, 8), np.float32))).shape
    (1, 3, 4, 4)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                f", dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Average pooling, as ``torch.nn.AvgPool2d``; ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input):
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding,
                            self.ceil_mode, self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed ``output_size`` (``1`` or ``(1, 1)``: global average
    pooling), as ``torch.nn.AdaptiveAvgPool2d``."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """Max pooling to a fixed ``output_size``, as ``torch.nn.AdaptiveMaxPool2d``."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, input):
        return F.adaptive_max_pool2d(input, self.output_size, self.return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class LPPool2d(Module):
    """Power-average pooling ``(sum over the window of x**p) ** (1/p)``, as
    ``torch.nn.LPPool2d(norm_type, kernel_size, stride=None, ceil_mode=False)``."""

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False):
        super().__init__()
        self.norm_type, self.kernel_size = norm_type, kernel_size
        self.stride, self.ceil_mode = stride, ceil_mode

    def forward(self, input):
        return F.lp_pool2d(input, self.norm_type, self.kernel_size, self.stride,
                           self.ceil_mode)

    def extra_repr(self):
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, ceil_mode={self.ceil_mode}")


class SPP(Module):
    """Spatial pyramid pooling (He et al., 2014): adaptive max pooling to ``(L, L)`` for each
    level ``L``, flattened and concatenated, so any input size gives
    ``(N, C * sum(L**2))`` features for a Linear head.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.nn.SPP((1, 2, 4))(fc.tensor(np.zeros((2, 3, 13, 9), np.float32))).shape
    (2, 63)
    """

    def __init__(self, levels=(1, 2, 4)):
        super().__init__()
        if not isinstance(levels, (tuple, list)):
            raise TypeError(f"SPP: expected levels to be a sequence of ints, got {levels!r}")
        self.levels = tuple(levels)

    def forward(self, input):
        return F.spatial_pyramid_pool(input, self.levels)

    def extra_repr(self):
        return f"levels={self.levels}"
