"""``SyncBatchNorm``: batch normalisation over the global batch of all ranks.

Forward, in training: each rank computes its per-channel count, mean and sum of squared
deviations (float64, two passes); one ``all_gather`` brings every rank's triple to every
rank, and Chan's pairwise update combines them in rank order, so the global mean and biased
variance are accurate (no ``E[x^2] - E[x]^2`` cancellation) and bit-identical on all ranks.

Backward: with ``xhat = (x - mean) * invstd`` over the global batch of N values per
channel, ``gx = weight * invstd * (gy - sum(gy) / N - xhat * sum(gy * xhat) / N)`` where the
sums run over *all* ranks: one ``all_reduce`` of the two per-channel sums. The weight and
bias gradients are the local sums (``sum(gy * xhat)``, ``sum(gy)``), which
``DistributedDataParallel`` then averages like any other gradient: with per-rank losses
averaged over ranks, this is exactly the gradient of one process's loss on the whole batch.

Eval mode, and training in a job of one process, use ``fastconv.functional.batch_norm``.
"""
import numpy as np

from ..autograd import Function
from ..functional import batch_norm
from ..nn import BatchNorm2d, Module
from ..tensor import Tensor
from . import collectives as C

__all__ = ["SyncBatchNorm"]


class _WorldGroup:
    """The reductions SyncBatchNorm needs, over the initialised process group."""

    @staticmethod
    def all_gather(array):
        return C.all_gather(array)

    @staticmethod
    def all_reduce_sum(array):
        return C.all_reduce(array, "sum")


class _LocalGroup:
    """A job of one (tests run the synchronised code path in a single process with it)."""

    @staticmethod
    def all_gather(array):
        return np.asarray(array)[None]

    @staticmethod
    def all_reduce_sum(array):
        return array


def _combine(stats, c):
    """Global (count, mean, M2) from per-rank rows [count, mean (c), M2 (c)], rank order."""
    total, mean, m2 = 0.0, np.zeros(c), np.zeros(c)
    for row in stats:
        n = float(row[0])
        if n == 0:
            continue
        delta = row[1:1 + c] - mean
        new_total = total + n
        mean = mean + delta * (n / new_total)
        m2 = m2 + row[1 + c:] + delta * delta * (total * n / new_total)
        total = new_total
    return total, mean, m2


class _SyncBatchNorm(Function):
    """Training-mode batch norm with statistics and gradient sums over ``group``."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, group):
        n, c = x.shape[0], x.shape[1]
        x3 = x.reshape(n, c, -1)
        local = x3.shape[0] * x3.shape[2]
        row = np.zeros(1 + 2 * c)
        row[0] = local
        if local:
            mean = x3.mean(axis=(0, 2), dtype=np.float64)
            dev = x3 - mean.astype(x.dtype)[:, None]
            row[1:1 + c] = mean
            row[1 + c:] = np.einsum("ncl,ncl->c", dev, dev, dtype=np.float64)
        total, mean, m2 = _combine(group.all_gather(row), c)
        if total <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got "
                             f"{int(total)} over all ranks (input size {tuple(x.shape)})")
        var = m2 / total
        invstd = 1.0 / np.sqrt(var + eps)
        for buffer, stat in ((running_mean, mean), (running_var, var * total / (total - 1))):
            if buffer is not None:  # unbiased variance for the running estimate
                buffer[...] = (1 - momentum) * buffer.astype(np.float64) + momentum * stat
        dt = x.dtype
        scale = invstd if weight is None else invstd * weight
        y = (x3 - mean.astype(dt)[:, None]) * scale.astype(dt)[:, None]
        if bias is not None:
            y += bias.astype(dt, copy=False)[:, None]
        ctx.save_for_backward(x3, weight, mean, invstd)
        ctx.setup = (x.shape, total, group)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad_out):
        x3, weight, mean, invstd = ctx.saved_tensors
        shape, total, group = ctx.setup
        dt = x3.dtype
        gy = grad_out.astype(dt, copy=False).reshape(x3.shape)
        xhat = (x3 - mean.astype(dt)[:, None]) * invstd.astype(dt)[:, None]
        sum_gy = gy.sum(axis=(0, 2), dtype=np.float64)
        sum_gy_xhat = np.einsum("ncl,ncl->c", gy, xhat, dtype=np.float64)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = None
        if need_x:
            c = len(mean)
            sums = group.all_reduce_sum(np.concatenate([sum_gy, sum_gy_xhat]))
            scale = invstd if weight is None else invstd * weight
            gx = (gy - (sums[:c] / total).astype(dt)[:, None]
                  - xhat * (sums[c:] / total).astype(dt)[:, None])
            gx *= scale.astype(dt)[:, None]
            gx = gx.reshape(shape)
        gw = sum_gy_xhat.astype(dt) if need_w else None
        gb = sum_gy.astype(dt) if need_b else None
        return gx, gw, gb


class SyncBatchNorm(BatchNorm2d):
    """Batch normalisation whose training statistics span the batches of all ranks, as
    ``torch.nn.SyncBatchNorm``.

    Same constructor, parameters, buffers and ``state_dict`` as
    :class:`fastconv.nn.BatchNorm2d`; the input may be (N, C) or (N, C, ...). In training
    with more than one rank, the mean and variance (and the running estimates) are those of
    the concatenated batches of every rank, and backward reduces the gradient sums over the
    ranks too, so K ranks with batch B train exactly like one process with batch K x B.
    Every rank must run forward and backward through the same layers (two collectives per
    layer and step). In eval mode, or in a job of one process, it is ``BatchNorm2d``.

    Examples
    --------
    >>> model = SyncBatchNorm.convert_sync_batchnorm(fc.models.resnet20())  # doctest: +SKIP
    >>> model = DistributedDataParallel(model)
    """

    _group = None  # None: the initialised process group; tests may set a _LocalGroup

    def forward(self, input):
        x = input.data if isinstance(input, Tensor) else np.asarray(input)
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm: expected input (N, {self.num_features}, ...), "
                             f"got shape {tuple(x.shape)}")
        group = self._group
        if group is None and C.is_initialized() and C.get_world_size() > 1:
            group = _WorldGroup
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        rm = self.running_mean if track else None
        rv = self.running_var if track else None
        if not use_batch_stats or group is None:
            return batch_norm(input, rm, rv, self.weight, self.bias, use_batch_stats,
                              factor, self.eps)
        dtype = next((a.dtype for a in (self.weight, self.running_mean) if a is not None),
                     None)
        if x.dtype not in (np.float32, np.float64) or dtype not in (None, x.dtype):
            raise TypeError(f"SyncBatchNorm: expected float32 or float64 input of the "
                            f"layer's dtype {dtype}, got {x.dtype}")
        return _SyncBatchNorm.apply(input, self.weight, self.bias, running_mean=rm,
                                    running_var=rv, momentum=factor, eps=self.eps,
                                    group=group)

    @classmethod
    def convert_sync_batchnorm(cls, module):
        """Replace every ``BatchNorm2d`` in ``module`` (recursively) by a
        ``SyncBatchNorm`` that shares its parameters and buffers; returns ``module`` (or
        the replacement, when ``module`` itself is a ``BatchNorm2d``)."""
        if isinstance(module, BatchNorm2d) and not isinstance(module, SyncBatchNorm):
            sync = cls.__new__(cls)
            Module.__init__(sync)
            for key, value in module.__dict__.items():
                if key not in ("_parameters", "_buffers", "_modules", "_forward_hooks",
                               "_forward_pre_hooks", "_non_persistent_buffers"):
                    object.__setattr__(sync, key, value)
            sync._parameters.update(module._parameters)
            sync._buffers.update(module._buffers)
            sync._non_persistent_buffers.update(module._non_persistent_buffers)
            return sync
        for name, child in list(module._modules.items()):
            if child is not None:
                module._modules[name] = cls.convert_sync_batchnorm(child)
        return module
