"""Small helpers shared by the layer modules."""
import math
import numbers

import numpy as np

from .. import init
from ..module import Parameter, _as_dtype

_DEFAULT_DTYPE = np.dtype(np.float32)


def layer_dtype(dtype):
    """float32 unless given; float32 or float64 only."""
    return _DEFAULT_DTYPE if dtype is None else _as_dtype(dtype)


def empty_parameter(shape, dtype):
    return Parameter(np.empty(shape, dtype=layer_dtype(dtype)))


def is_int(value):
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool)


def positive_int(layer, name, value, minimum=1):
    if not is_int(value) or value < minimum:
        raise ValueError(f"{layer}: expected {name} to be an int >= {minimum}, got {value!r}")
    return int(value)


def pair(layer, name, value, minimum):
    """``(h, w)`` from an int or a pair, each >= minimum (PyTorch's ``_pair``)."""
    if is_int(value):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(is_int(v) and v >= minimum for v in value)):
        raise ValueError(f"{layer}: expected {name} to be an int or a pair of ints >= "
                         f"{minimum}, got {value!r}")
    return (int(value[0]), int(value[1]))


def default_uniform_init(weight, bias):
    """PyTorch's default for conv and linear: ``kaiming_uniform_(weight, a=sqrt(5))``,
    i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    with the same fan_in."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(bias, -bound, bound)
