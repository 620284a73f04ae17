"""Argument normalisation and validation shared by the public ops.

Everything a user can get wrong is checked here, once, with a message that names the argument,
what was expected and what was got. Functions and kernels below this layer trust their input.
"""
import numbers

import numpy as np

from ..tensor import Tensor

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def data_of(x):
    """The ndarray behind a Tensor or array-like (no copy for ndarrays and Tensors)."""
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def is_unbatched(x):
    """True for an unbatched (C, H, W) input, which the 2-D ops accept as PyTorch does."""
    return data_of(x).ndim == 3


def batched(x):
    """``x`` with a batch axis of 1 in front: an unbatched (C, H, W) input as (1, C, H, W)
    (through the tape for a Tensor)."""
    if isinstance(x, Tensor):
        return x.reshape((1,) + x.shape)
    return data_of(x)[None]


def check_float(op, name, x):
    """The dtype of ``x`` if it is float32/float64, else a TypeError naming it."""
    dt = data_of(x).dtype
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{op}: expected {name} to be float32 or float64, got {dt}")
    return dt


def check_same_dtype(op, named):
    """All named operands (name -> Tensor/array, None skipped) share one float dtype."""
    dtypes = {}
    for name, x in named.items():
        if x is not None:
            dtypes[name] = check_float(op, name, x)
    if len(set(dtypes.values())) > 1:
        got = ", ".join(f"{n}={d}" for n, d in dtypes.items())
        raise TypeError(f"{op}: expected all operands to share one dtype (float32 or float64); "
                        f"got {got}. Cast them first, e.g. with .astype().")
    return next(iter(dtypes.values()))


def check_ndim(op, name, x, ndims):
    nd = data_of(x).ndim
    if nd not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{op}: expected {name} to be {want}, got {nd}-D with shape "
                         f"{tuple(data_of(x).shape)}")
    return nd


def _is_int(v):
    if type(v) is int:      # the common case, without the ABC check below (about 1 us)
        return True
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


# The kernels take sizes and geometry as C ints.
INT_MAX = 2 ** 31 - 1


def _check_c_int(op, name, v, value):
    if v > INT_MAX:
        raise ValueError(f"{op}: expected {name} <= 2**31 - 1 (the kernels' int range), got "
                         f"{value!r}")


def pair(op, name, value, minimum):
    """Normalise an int or a length-2 sequence of ints to ``(h, w)``, each >= minimum."""
    if _is_int(value):
        out = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{op}: expected {name} to be an int or a pair of ints, got {value!r}")
    if out[0] < minimum or out[1] < minimum:
        rel = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{op}: expected {name} to be {rel}, got {value!r}")
    _check_c_int(op, name, max(out), value)
    return out


def positive_int(op, name, value):
    if not _is_int(value):
        raise TypeError(f"{op}: expected {name} to be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{op}: expected {name} to be positive, got {value}")
    _check_c_int(op, name, value, value)
    return int(value)


def kernel_ready(a):
    """C-contiguous view or copy, the layout every kernel takes. Read-only arrays are fine:
    kernels take their inputs as const memoryviews. A 0-d array stays 0-d (which
    ``np.ascontiguousarray`` would make 1-d)."""
    return np.asarray(a, order="C")
