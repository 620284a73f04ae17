"""Differentiable ops on Tensors (or ndarrays, treated as constants), named as
``torch.nn.functional``."""
from ._dispatch import conv_algorithms, select_conv_algorithm
from .conv import conv2d, conv_transpose2d, depthwise_separable_conv2d

__all__ = ["conv2d", "conv_transpose2d", "depthwise_separable_conv2d", "conv_algorithms",
           "select_conv_algorithm"]
