"""fastconv: fast CPU convolutions for small CNNs, with a PyTorch-like API.

>>> import fastconv as fc
>>> import fastconv.functional as F
"""
import os as _os

from ._version import __version__

# libgomp reads its wait policy once, when the first kernel module loads it. Its default makes
# idle threads spin for 300000 rounds at every barrier; when another process holds one of the
# cores, a 2-thread step then ran 2-6x slower than 1 thread here (lenet5 training step: 338 ms
# vs 57 ms). Waiting passively instead costs a wake-up per parallel region, which on a VM can
# take 100 us or more: a 2-thread call of a 2 us kernel took 130 us. A short spin keeps most
# of both: 2.3 us for that call; resnet20 and lenet5 training steps 0.73-0.87x the time of
# passive waiting, and with a busy process on one of the two cores 1.2-1.4x (passive: about
# the 1-thread time). Users who set either variable keep their choice.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "3000"

try:
    from ._ext import _runtime  # noqa: F401  (fails here if the kernels were never compiled)
except ImportError as exc:  # pragma: no cover - depends on how the package was installed
    raise ImportError(
        "fastconv's compiled kernels (fastconv._ext) are missing or were built for another "
        "Python. Install with `pip install .` from the source tree, or for development run "
        "`python setup.py build_ext --inplace`. Original error: " + str(exc)) from exc

from ._config import build_info, get_num_threads, manual_seed, set_num_threads
from ._malloc import tune_malloc as _tune_malloc

_tune_malloc()   # freed activations stay mapped between training steps (see _malloc)
from .autograd import Function, is_grad_enabled, no_grad
from .gradcheck import gradcheck
from .tensor import Tensor, tensor
from . import functional, reference
from .functional import conv_algorithms
from . import data, models, nn, optim
from .fuse import fuse
from .nn.serialization import load, save
from .summary import summary

__all__ = ["Tensor", "tensor", "Function", "no_grad", "is_grad_enabled", "gradcheck",
           "set_num_threads", "get_num_threads", "manual_seed", "build_info",
           "conv_algorithms", "functional", "reference", "nn", "optim", "models", "data",
           "summary", "save", "load", "fuse", "__version__"]
