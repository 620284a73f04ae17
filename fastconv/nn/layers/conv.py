"""Convolution layers: ``Conv2d``, ``ConvTranspose2d``, ``DepthwiseSeparableConv2d``."""
import numpy as np

from ... import functional as F
from ...tensor import Tensor
from ..module import Module
from ._utils import default_uniform_init, empty_parameter, is_int, pair, positive_int

__all__ = ["Conv2d", "ConvTranspose2d", "DepthwiseSeparableConv2d"]


class _ConvNd(Module):
    """Shared constructor of Conv2d and ConvTranspose2d (PyTorch's ``_ConvNd``)."""

    _layer = "Conv"

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 transposed, output_padding, groups, bias, padding_mode, dtype):
        super().__init__()
        name = type(self).__name__
        in_channels = positive_int(name, "in_channels", in_channels)
        out_channels = positive_int(name, "out_channels", out_channels)
        groups = positive_int(name, "groups", groups)
        for what, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
            if channels % groups:
                raise ValueError(f"{name}: expected {what} divisible by groups, got "
                                 f"{what}={channels}, groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported: expected "
                             f"'zeros', got {padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(name, "kernel_size", kernel_size, 1)
        self.stride = pair(name, "stride", stride, 1)
        if isinstance(padding, str):
            if transposed:
                raise ValueError(f"{name}: expected padding to be an int or a pair of ints, "
                                 f"got {padding!r}")
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: invalid padding string: expected one of "
                                 f"['valid', 'same'], got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"{name}: padding='same' is not supported for strided "
                                 f"convolutions: expected stride 1, got {self.stride}")
            self.padding = padding
        else:
            self.padding = pair(name, "padding", padding, 0)
        self.dilation = pair(name, "dilation", dilation, 1)
        self.transposed = transposed
        self.output_padding = pair(name, "output_padding", output_padding, 0)
        self.groups = groups
        self.padding_mode = padding_mode
        if transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = empty_parameter(shape, dtype)
        if bias:
            self.bias = empty_parameter((out_channels,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), with
        fan_in = weight.shape[1] * kH * kW (also for the transposed weight, as PyTorch)."""
        default_uniform_init(self.weight, self.bias)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    """2-D convolution over an NCHW batch, as ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, dilation : int or (int, int)
    padding : int, (int, int), "same" or "valid"
    groups : int
    bias : bool
    padding_mode : "zeros"
        The only mode supported (``ValueError`` otherwise).
    algorithm : None or one of :func:`fastconv.conv_algorithms`
        Passed to :func:`fastconv.functional.conv2d` (None: automatic choice).
    dtype : float32 (default) or float64

    Attributes
    ----------
    weight : Parameter (out_channels, in_channels / groups, kH, kW)
    bias : Parameter (out_channels,) or None
        Both U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels / groups * kH * kW.

    Output ``(N, out_channels, OH, OW)`` with
    ``OH = floor((H + 2*padding - dilation*(kH - 1) - 1) / stride) + 1``.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> conv = fc.nn.Conv2d(3, 8, 3, padding=1)
    >>> conv(fc.tensor(np.zeros((2, 3, 16, 16), np.float32))).shape
    (2, 8, 16, 16)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", algorithm=None,
                 dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         False, 0, groups, bias, padding_mode, dtype)
        self.algorithm = algorithm

    def forward(self, input):
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups, algorithm=self.algorithm)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution, as ``torch.nn.ConvTranspose2d``.

    Parameters as PyTorch's (``padding_mode`` "zeros" only). ``weight`` is
    ``(in_channels, out_channels / groups, kH, kW)``; output size
    ``OH = (H - 1)*stride - 2*padding + dilation*(kH - 1) + output_padding + 1``.
    ``forward(input, output_size=None)``: with ``output_size`` ((H, W) or a full shape) the
    output padding is chosen to produce that size, as PyTorch.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> up = fc.nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1)
    >>> up(fc.tensor(np.zeros((1, 8, 7, 7), np.float32)), output_size=(14, 14)).shape
    (1, 4, 14, 14)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 algorithm=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         True, output_padding, groups, bias, padding_mode, dtype)
        self.algorithm = algorithm

    def _output_padding(self, input, output_size):
        if output_size is None:
            return self.output_padding
        ndim = np.ndim(input.data if isinstance(input, Tensor) else input)
        if (not isinstance(output_size, (tuple, list)) or len(output_size) not in (2, ndim)
                or not all(is_int(s) for s in output_size)):
            raise ValueError(f"ConvTranspose2d: expected output_size to be a sequence of 2 "
                             f"(or {ndim}, the input's ndim) ints, got {output_size!r}")
        output_size = tuple(int(s) for s in output_size)[-2:]
        hw = np.shape(input.data if isinstance(input, Tensor) else input)[-2:]
        result = []
        for i in range(2):
            smallest = ((hw[i] - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            largest = smallest + max(self.stride[i], self.dilation[i]) - 1
            if not smallest <= output_size[i] <= largest:
                raise ValueError(f"ConvTranspose2d: requested an output size of "
                                 f"{output_size}, but valid sizes range from {smallest} to "
                                 f"{largest} (for an input of {tuple(hw)}): expected "
                                 f"{smallest} <= size <= {largest}, got {output_size[i]}")
            result.append(output_size[i] - smallest)
        return tuple(result)

    def forward(self, input, output_size=None):
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups,
                                  self.dilation, algorithm=self.algorithm)


class DepthwiseSeparableConv2d(Module):
    """Depthwise convolution (groups = in_channels, ``depth_multiplier`` filters per
    channel) then a 1x1 pointwise convolution, run as one
    :func:`fastconv.functional.depthwise_separable_conv2d` call.

    The parameters live in two ``Conv2d`` children so the state_dict keys are those of the
    PyTorch equivalent ``depthwise = Conv2d(C_in, C_in*m, k, groups=C_in)``,
    ``pointwise = Conv2d(C_in*m, C_out, 1)``: ``depthwise.weight`` (C_in*m, 1, kH, kW),
    ``depthwise.bias`` (C_in*m,), ``pointwise.weight`` (C_out, C_in*m, 1, 1),
    ``pointwise.bias`` (C_out,) (biases only with ``bias=True``). Each is initialised as
    that Conv2d would be. The children are containers only: ``forward`` does not call them.

    Output ``(N, out_channels, OH, OW)``, OH as :class:`Conv2d` with the depthwise geometry.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> ds = fc.nn.DepthwiseSeparableConv2d(8, 16, 3, padding=1)
    >>> ds(fc.tensor(np.zeros((1, 8, 10, 10), np.float32))).shape
    (1, 16, 10, 10)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, depth_multiplier=1, bias=True, dtype=None):
        super().__init__()
        name = type(self).__name__
        in_channels = positive_int(name, "in_channels", in_channels)
        mid = in_channels * positive_int(name, "depth_multiplier", depth_multiplier)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.depth_multiplier = depth_multiplier
        self.depthwise = Conv2d(in_channels, mid, kernel_size, stride, padding, dilation,
                                groups=in_channels, bias=bias, dtype=dtype)
        self.pointwise = Conv2d(mid, out_channels, 1, bias=bias, dtype=dtype)

    kernel_size = property(lambda self: self.depthwise.kernel_size)
    stride = property(lambda self: self.depthwise.stride)
    padding = property(lambda self: self.depthwise.padding)
    dilation = property(lambda self: self.depthwise.dilation)

    def forward(self, input):
        return F.depthwise_separable_conv2d(input, self.depthwise.weight,
                                            self.pointwise.weight, self.depthwise.bias,
                                            self.pointwise.bias, self.stride, self.padding,
                                            self.dilation)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.depth_multiplier != 1:
            s += f", depth_multiplier={self.depth_multiplier}"
        if self.depthwise.bias is None:
            s += ", bias=False"
        return s
