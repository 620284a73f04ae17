"""``BatchNorm2d``."""
import numpy as np

from ... import functional as F
from ...tensor import Tensor
from .. import init
from ..module import Module
from ...functional.normalization import batch_norm_relu
from ._utils import empty_parameter, layer_dtype, positive_int

__all__ = ["BatchNorm2d"]


class BatchNorm2d(Module):
    """Batch normalisation over the channels of an NCHW batch, as ``torch.nn.BatchNorm2d``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``. In training the batch's statistics
    are used and the running estimates updated:
    ``running = (1 - momentum) * running + momentum * batch`` (unbiased variance), or, with
    ``momentum=None``, the cumulative average over the ``num_batches_tracked`` batches seen.
    In eval the running estimates are used. Without ``track_running_stats`` the batch
    statistics are used in both modes.

    Parameters
    ----------
    num_features : int
        C.
    eps : float, default 1e-5
    momentum : float or None, default 0.1
    affine : bool, default True
        Learnable ``weight`` (ones) and ``bias`` (zeros) of shape (C,).
    bias : bool, default True (keyword only)
        With ``affine``, whether there is a learnable ``bias`` (as PyTorch >= 2.10).
    track_running_stats : bool, default True
        Buffers ``running_mean`` (zeros), ``running_var`` (ones) and
        ``num_batches_tracked`` (int64 0-d).
    dtype : float32 (default) or float64

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> bn = fc.nn.BatchNorm2d(3)
    >>> sorted(bn.state_dict())
    ['bias', 'num_batches_tracked', 'running_mean', 'running_var', 'weight']
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=None, *, bias=True):
        super().__init__()
        self.num_features = positive_int(type(self).__name__, "num_features", num_features)
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.use_bias = bool(affine and bias)
        dt = layer_dtype(dtype)
        if affine:
            self.weight = empty_parameter((num_features,), dt)
        else:
            self.register_parameter("weight", None)
        if self.use_bias:
            self.bias = empty_parameter((num_features,), dt)
        else:
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dt))
            self.register_buffer("running_var", np.ones(num_features, dt))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
        if self.use_bias:
            init.zeros_(self.bias)

    def forward(self, input):
        return F.batch_norm(*self._functional_args(input))

    def _forward_relu(self, input):
        """``relu(self(input))`` in one op (``batch_norm_relu``), hooks aside: the callers
        (``fastconv.nn.layers.fused``) check there are none."""
        return batch_norm_relu(*self._functional_args(input))

    def _functional_args(self, input):
        """Check the input and count the batch; the arguments of ``F.batch_norm``."""
        ndim = (input.data if isinstance(input, Tensor) else np.asarray(input)).ndim
        if ndim != 4:
            raise ValueError(f"BatchNorm2d: expected 4D input (got {ndim}D input)")
        # As PyTorch: the cumulative average (momentum=None) uses 1 / batches seen.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return (input, self.running_mean if track else None,
                self.running_var if track else None, self.weight, self.bias,
                use_batch_stats, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.use_bias}, "
                f"track_running_stats={self.track_running_stats}")
