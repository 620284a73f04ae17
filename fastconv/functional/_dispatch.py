"""Which convolution algorithm runs: one pure function over named predicates.

Every algorithm module in ``fastconv._ext`` exposes ``forward``, ``backward_input`` and
``backward_weight`` with the same arguments, so dispatch is a dict lookup. The choice is made
once in forward and recorded; backward uses the same algorithm.
"""
from dataclasses import dataclass

from .._ext import conv2d_depthwise, conv2d_direct, conv2d_im2col, conv2d_winograd

KERNELS = {
    "direct": conv2d_direct,
    "im2col": conv2d_im2col,
    "depthwise": conv2d_depthwise,
    "winograd": conv2d_winograd,
}

# Algorithms that only handle part of the parameter space, with the predicate that says where.
SPECIALISED = {"depthwise": lambda p: is_depthwise(p), "winograd": lambda p: is_winograd(p)}

# The float32 Winograd blocks have AVX-512 and AVX2 kernels; elsewhere they run portable C,
# slower than im2col + GEMM, so the automatic choice only takes Winograd where this is True.
WINOGRAD_SIMD = conv2d_winograd.simd_available()


@dataclass(frozen=True)
class ConvParams:
    """Geometry of one convolution, in the conv's own terms (for a transposed convolution,
    the conv whose backward-input it is)."""
    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    itemsize: int = 4   # bytes per element of the operands: 4 for float32, 8 for float64

    def kernel_args(self):
        """The geometry arguments every kernel entry point takes, in kernel order:
        stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups."""
        return (*self.stride, *self.padding, *self.dilation, self.groups)


def is_depthwise(p):
    """groups == C_in (channel multiplier C_out // C_in >= 1)."""
    return p.groups == p.c_in and p.groups > 1 and p.c_out % p.c_in == 0


def is_winograd(p):
    """3x3 kernel, stride 1, groups 1 (any padding), and dilation 1 or one that divides the
    input size and the padding: Winograd F(2x2, 3x3)."""
    return conv2d_winograd.supports(p.kh, p.kw, *p.stride, *p.dilation, p.groups, p.h, p.w,
                                    *p.padding)


def winograd_pays(p):
    """float32 with SIMD blocks and enough channels for the 16 GEMMs to outweigh the
    transforms. On AVX2 (a Zen 3 core, 2 threads, each pass against im2col's): 0.40-0.85x
    the time forward and for the input gradient with 32 to 256 channels, 0.92-1.06x with
    16; the weight gradient 0.56-0.73x with 16 to 256. On AVX-512, measured at 2 threads
    against im2col, the three passes of a training step together
    (interleaved runs, batch 64 unless noted): 0.52-0.67x of the time with 64 channels in and
    out, 0.76-0.84x with 32 (resnet20's 16x16 layers); 0.69-0.76x for 24 channels at 32x32,
    0.87-0.91x for 20 at 28x28; with 16, 0.89-0.93x at 32x32 (resnet20's first stage),
    0.88-0.91x at 8x8, 0.97-1.02x at 16x16, 0.94-1.12x at 56x56, 0.96-1.02x for 16 -> 64
    channels at 64x64 (batch 32). Below 16 channels the transforms dominate."""
    return p.itemsize == 4 and WINOGRAD_SIMD and min(p.c_in, p.c_out) >= 16


def select_conv_algorithm(params, need_grad):
    """Name of the algorithm for ``params`` (a :class:`ConvParams`).

    Measured (``fastconv bench --suite conv``, 2 threads): the depthwise kernel beats
    im2col + GEMM by 2.5-3.3x on depthwise layers; everywhere else im2col + GEMM wins, even
    on first layers with 1-3 input channels (lenet_c1: 2.5x forward, 4x backward over the
    direct loops; the 7x7 stride-2 stem: 7x / 11x), so ``direct`` is only an explicit choice.
    ``need_grad`` is part of the signature because the best choice for a training step (three
    passes) may differ from inference; the current rules do not depend on it.
    """
    if not isinstance(params, ConvParams):
        raise TypeError(f"select_conv_algorithm: expected params to be a ConvParams, got "
                        f"{type(params).__name__}")
    if is_depthwise(params):
        return "depthwise"
    if is_winograd(params) and winograd_pays(params):
        return "winograd"
    return "im2col"


def conv_algorithms():
    """Names accepted by ``algorithm=`` in the convolution ops."""
    return tuple(KERNELS)
