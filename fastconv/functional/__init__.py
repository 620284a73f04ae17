"""Differentiable ops on Tensors (or ndarrays, treated as constants), named as
``torch.nn.functional``."""
from ._dispatch import conv_algorithms, select_conv_algorithm
from .activation import (dropout, elu, leaky_relu, log_softmax, prelu, relu, sigmoid, softmax,
                         tanh)
from .conv import conv2d, conv_transpose2d, depthwise_separable_conv2d
from .linear import add, cat, flatten, linear
from .loss import cross_entropy, l1_loss, mse_loss, nll_loss
from .normalization import batch_norm
from .pooling import (adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, lp_pool2d,
                      max_pool2d, spatial_pyramid_pool)
from .upsampling import interpolate, pixel_shuffle, pixel_unshuffle

__all__ = [
    "conv2d", "conv_transpose2d", "depthwise_separable_conv2d", "conv_algorithms",
    "select_conv_algorithm",
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "lp_pool2d",
    "spatial_pyramid_pool",
    "batch_norm",
    "relu", "leaky_relu", "elu", "prelu", "sigmoid", "tanh", "softmax", "log_softmax",
    "dropout",
    "linear", "flatten", "cat", "add",
    "cross_entropy", "nll_loss", "mse_loss", "l1_loss",
    "interpolate", "pixel_shuffle", "pixel_unshuffle",
]
