"""Plain NumPy reference implementations of fastconv's kernels, forward and backward.

The oracle the tests compare the compiled kernels against and the baseline ``bench/``
measures them against. Written for clarity, imports only NumPy, and shares no code
with the compiled kernels or the rest of fastconv.

The convolution functions are re-exported here; the other op families live in their
submodules: ``pool``, ``batchnorm``, ``activations``, ``linear``, ``loss``, ``upsample``.
"""
from . import activations, batchnorm, linear, loss, pool, upsample
from .conv import (
    conv2d,
    conv2d_backward_bias,
    conv2d_backward_input,
    conv2d_backward_weight,
    conv_transpose2d,
    conv_transpose2d_backward_bias,
    conv_transpose2d_backward_input,
    conv_transpose2d_backward_weight,
)

__all__ = [
    "activations", "batchnorm", "linear", "loss", "pool", "upsample",
    "conv2d",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "conv2d_backward_bias",
    "conv_transpose2d",
    "conv_transpose2d_backward_input",
    "conv_transpose2d_backward_weight",
    "conv_transpose2d_backward_bias",
]
