"""``fuse(model)``: fold every BatchNorm that directly follows a convolution into it, for
inference.

In eval mode BatchNorm is a per-channel affine map, ``y = (x - mean) * s + beta`` with
``s = gamma / sqrt(running_var + eps)``. After a convolution ``x = W * input + b`` it can be
absorbed exactly: ``W' = W * s`` (per output channel) and ``b' = (b - mean) * s + beta``. The
fused model runs one convolution instead of a convolution and a full pass over its output.

Which pairs are folded
----------------------
A convolution (``Conv2d``, ``ConvTranspose2d`` or ``DepthwiseSeparableConv2d``, whose
pointwise part takes the fold) and a ``BatchNorm2d`` that consumes its output and nothing
else:

* neighbours in a ``Sequential`` (one that keeps ``Sequential.forward``): LeNet-style stacks,
  MobileNet's ``DepthwiseSeparableBlock``, ResNet's ``downsample``, the hourglass blocks;
* the pairs that the models of :mod:`fastconv.models` wire up in their own ``forward``
  (``KNOWN_PAIRS``: ResNet's stem, BasicBlock's ``conv1``/``bn1`` and ``conv2``/``bn2``,
  MobileNetSmall's stem);
* pairs named by the caller (``pairs=``) for other custom modules, as in PyTorch's
  ``fuse_modules``: the caller vouches that the BatchNorm only ever sees that conv's output.

A module's own ``forward`` cannot be inspected, so a pair in a custom module is folded only
when it is listed in ``KNOWN_PAIRS`` (by exact class) or passed in ``pairs``. BatchNorms
without running statistics (``track_running_stats=False``) normalise with batch statistics
even in eval mode and are left alone, as are modules used more than once in the model.
"""
import copy

import numpy as np

from .models.mobilenet import MobileNetSmall
from .models.resnet import BasicBlock, ResNet
from .nn import (BatchNorm2d, Conv2d, ConvTranspose2d, DepthwiseSeparableConv2d, Identity,
                 Module, Parameter, Sequential)

__all__ = ["fuse", "KNOWN_PAIRS"]

# Exact class -> (conv child, BatchNorm child) pairs its forward() chains as bn(conv(x)).
KNOWN_PAIRS = {
    ResNet: (("conv1", "bn1"),),
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    MobileNetSmall: (("conv1", "bn1"),),
}

_CONVS = (Conv2d, ConvTranspose2d, DepthwiseSeparableConv2d)


def fuse(model, pairs=None):
    """Return an eval-mode copy of ``model`` with BatchNorm folded into the preceding convs.

    Parameters
    ----------
    model : fastconv.nn.Module
        Left unchanged (the result is a deep copy).
    pairs : iterable of (str, str), optional
        Extra ``(conv_name, bn_name)`` pairs as qualified names (``"block.conv"``,
        ``"block.bn"``) for custom modules whose ``forward`` applies the BatchNorm right
        after the convolution.

    Returns
    -------
    fastconv.nn.Module
        Same class and outputs in eval mode (up to rounding); each folded BatchNorm is
        replaced by ``Identity`` and its convolution gains a bias. Folded parameters keep
        their dtype (the fold itself is computed in float64).

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> model = fc.models.resnet20()
    >>> fused = fc.fuse(model)
    >>> any(isinstance(m, fc.nn.BatchNorm2d) for m in fused.modules())
    False
    >>> x = fc.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)))
    >>> with fc.no_grad():
    ...     err = np.abs(fused(x).data - model.eval()(x).data).max()
    >>> bool(err < 1e-4)
    True
    """
    if not isinstance(model, Module):
        raise TypeError(f"fuse: expected a fastconv.nn.Module, got {type(model).__name__}")
    fused = copy.deepcopy(model).eval()
    found = list(_adjacent_pairs(fused))
    for conv_name, bn_name in pairs or ():
        found.append(_named_pair(fused, conv_name, bn_name))
    uses = {}
    for _, module in fused.named_modules(remove_duplicate=False):
        uses[id(module)] = uses.get(id(module), 0) + 1
    for parent, conv_name, bn_name in found:
        conv, bn = parent._modules[conv_name], parent._modules[bn_name]
        if uses[id(conv)] == 1 and uses[id(bn)] == 1 and _foldable(conv, bn):
            _fold(conv, bn)
            setattr(parent, bn_name, Identity())
    return fused


def _adjacent_pairs(model):
    """(parent, conv child, bn child) for every pair chained by a Sequential or a known
    model class."""
    for parent in model.modules():
        if isinstance(parent, Sequential) and type(parent).forward is Sequential.forward:
            names = [k for k, m in parent._modules.items() if m is not None]
            candidates = zip(names, names[1:])
        else:
            candidates = KNOWN_PAIRS.get(type(parent), ())
        for conv_name, bn_name in candidates:
            conv, bn = parent._modules.get(conv_name), parent._modules.get(bn_name)
            if isinstance(conv, _CONVS) and isinstance(bn, BatchNorm2d):
                yield parent, conv_name, bn_name


def _named_pair(model, conv_name, bn_name):
    conv_parent, _, conv_child = conv_name.rpartition(".")
    bn_parent, _, bn_child = bn_name.rpartition(".")
    if conv_parent != bn_parent:
        raise ValueError(f"fuse: expected a conv and a BatchNorm2d in the same module, got "
                         f"{conv_name!r} and {bn_name!r}")
    parent = model.get_submodule(conv_parent)
    conv, bn = parent._modules.get(conv_child), parent._modules.get(bn_child)
    if not isinstance(conv, _CONVS) or not isinstance(bn, BatchNorm2d):
        raise ValueError(f"fuse: expected {conv_name!r} to be a convolution and {bn_name!r} "
                         f"a BatchNorm2d, got {type(conv).__name__} and "
                         f"{type(bn).__name__}")
    return parent, conv_child, bn_child


def _foldable(conv, bn):
    target = conv.pointwise if isinstance(conv, DepthwiseSeparableConv2d) else conv
    return bn.running_mean is not None and bn.num_features == target.out_channels


def _fold(conv, bn):
    """Scale the conv's weight per output channel and give it the shifted bias."""
    if isinstance(conv, DepthwiseSeparableConv2d):
        conv = conv.pointwise  # its forward reads pointwise.weight / pointwise.bias
    dtype = conv.weight.data.dtype
    scale = 1.0 / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.data.astype(np.float64)
    shift = -bn.running_mean.astype(np.float64) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.data
    w = conv.weight.data.astype(np.float64)
    if conv.transposed:
        # (C_in, C_out / groups, kH, kW): output channel g * C_out/groups + j is w[g, :, j]
        g = conv.groups
        per_group = w.shape[1]
        w = (w.reshape(g, -1, per_group, *w.shape[2:])
             * scale.reshape(g, 1, per_group, 1, 1)).reshape(w.shape)
    else:
        w = w * scale[:, None, None, None]
    b = shift if conv.bias is None else conv.bias.data * scale + shift
    requires_grad = conv.weight.requires_grad
    conv.weight = Parameter(np.ascontiguousarray(w, dtype=dtype), requires_grad)
    conv.bias = Parameter(np.ascontiguousarray(b, dtype=dtype), requires_grad)
