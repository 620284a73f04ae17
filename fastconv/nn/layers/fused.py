"""Pairs of modules run as one op, with the same results bit for bit (tested) and one pass
over the data instead of two: a BatchNorm2d followed by a ReLU (``nn.Sequential`` and the
models' blocks) and the ReLU of a residual sum (the ResNet blocks). A module with hooks, or a
subclass (which may change its forward), always runs as itself."""
from ... import functional as F
from ...functional.activation import add_relu
from .activation import ReLU
from .normalization import BatchNorm2d

__all__ = []


def _plain(module):
    return not module._forward_hooks and not module._forward_pre_hooks


def fusable(bn, relu):
    """Whether ``relu(bn(x))`` may run as one op: a BatchNorm2d then a ReLU (these exact
    classes), neither with hooks."""
    return type(bn) is BatchNorm2d and type(relu) is ReLU and _plain(bn) and _plain(relu)


def batch_norm_relu_modules(bn, relu, input):
    """``relu(bn(input))``: one pass over the data (``batch_norm_relu``) when
    :func:`fusable`, otherwise the two modules in turn."""
    if fusable(bn, relu):
        return bn._forward_relu(input)
    return relu(bn(input))


def relu_of_sum(relu, a, b):
    """``relu(F.add(a, b))`` for a ReLU module: one pass (``add_relu``) when it is a plain
    ReLU without hooks, otherwise the add and the module."""
    if type(relu) is ReLU and _plain(relu):
        return add_relu(a, b)
    return relu(F.add(a, b))
