"""fastconv: fast CPU convolutions for small CNNs, with a PyTorch-like API.

>>> import fastconv as fc
>>> import fastconv.functional as F
"""
from ._version import __version__

try:
    from ._ext import _runtime  # noqa: F401  (fails here if the kernels were never compiled)
except ImportError as exc:  # pragma: no cover - depends on how the package was installed
    raise ImportError(
        "fastconv's compiled kernels (fastconv._ext) are missing or were built for another "
        "Python. Install with `pip install .` from the source tree, or for development run "
        "`python setup.py build_ext --inplace`. Original error: " + str(exc)) from exc

from ._config import build_info, get_num_threads, manual_seed, set_num_threads
from .autograd import Function, is_grad_enabled, no_grad
from .gradcheck import gradcheck
from .tensor import Tensor, tensor
from . import functional, reference
from .functional import conv_algorithms
from . import data, models, nn, optim
from .nn.serialization import load, save
from .summary import summary

__all__ = ["Tensor", "tensor", "Function", "no_grad", "is_grad_enabled", "gradcheck",
           "set_num_threads", "get_num_threads", "manual_seed", "build_info",
           "conv_algorithms", "functional", "reference", "nn", "optim", "models", "data",
           "summary", "save", "load", "__version__"]
