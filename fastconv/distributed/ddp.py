"""``DistributedDataParallel``: gradients averaged over ranks while backward runs.

Each rank runs the same model on its own part of the batch. At construction rank 0's
parameters and buffers are copied to every rank; in every ``backward()`` the gradients are
summed over ranks (``Iallreduce``) and divided by the world size, so an optimiser step then
makes the same update on every rank as one process would with the whole batch.

Buckets (PyTorch's design). Parameters are grouped, in reverse order of
``model.parameters()`` (roughly the order backward produces their gradients), into buckets
of at most ``bucket_cap_mb`` (the first one ``min(1 MB, bucket_cap_mb)``, so that sending
starts early), one dtype per bucket. Each parameter has a post-accumulate-grad hook (see
``fastconv.autograd``): when its gradient is final it is copied into its bucket's flat
buffer, and a bucket whose gradients are all in is sent at once with a non-blocking
``Iallreduce`` while backward goes on with the earlier layers. Buckets are started strictly
in order, so every rank issues the same collectives in the same order. A callback queued on
the backward pass waits for the last messages and writes the averaged gradients back
before ``backward()`` returns. MPI progresses a message only inside MPI calls, so every hook
also polls the messages in flight.
"""
import contextlib
import time

import numpy as np

from .. import autograd
from ..nn import Module
from . import collectives as C

__all__ = ["DistributedDataParallel", "average_gradients"]

_MB = 1024 * 1024


def _make_buckets(params, cap_bytes, first_cap_bytes):
    """Lists of parameters: reverse order, one dtype per bucket, capped in bytes."""
    buckets, current, size, cap = [], [], 0, first_cap_bytes
    for p in reversed(params):
        nbytes = p.data.nbytes
        if current and (size + nbytes > cap or p.data.dtype != current[0].data.dtype):
            buckets.append(current)
            current, size, cap = [], 0, cap_bytes
        current.append(p)
        size += nbytes
    if current:
        buckets.append(current)
    return buckets


class _Bucket:
    def __init__(self, params):
        self.params = params
        self.dtype = params[0].data.dtype
        self.offsets = np.cumsum([0] + [p.data.size for p in params])
        self.flat = np.zeros(int(self.offsets[-1]), self.dtype)
        # each parameter's slice of the flat buffer, in its shape (made once: the copies in
        # and out of the bucket are then single assignments)
        self.views = [self.flat[a:b].reshape(p.data.shape)
                      for a, b, p in zip(self.offsets[:-1], self.offsets[1:], params)]
        self.ready = [False] * len(params)
        self.pending = len(params)
        self.request = None

    def reset(self):
        self.ready = [False] * len(self.params)
        self.pending = len(self.params)
        self.request = None


class _Reducer:
    """Buckets, hooks and the per-backward state of one DDP model."""

    def __init__(self, params, bucket_cap_mb, group):
        self.group = group
        self.size = group.size
        cap = max(1, int(bucket_cap_mb * _MB))
        self.buckets = [_Bucket(b) for b in _make_buckets(params, cap, min(cap, _MB))]
        self.where = {}
        for bi, bucket in enumerate(self.buckets):
            for i, p in enumerate(bucket.params):
                self.where[id(p)] = (bi, i)
        self.handles = [p.register_post_accumulate_grad_hook(self._grad_ready)
                        for p in params]
        self.enabled = True
        self.active = False        # a backward pass is being reduced
        self.next_launch = 0       # buckets are started in index order
        self.reductions = 0        # completed reductions (the training context checks it)
        self.timings = {"backward_passes": 0, "copy_s": 0.0, "launch_s": 0.0,
                        "wait_s": 0.0}

    def remove(self):
        for h in self.handles:
            h.remove()

    # ------------------------------------------------------------------ hooks
    def _grad_ready(self, param):
        if not self.enabled:
            return
        if not self.active:
            self.active = True
            autograd.queue_callback(self._finish)
        bi, i = self.where[id(param)]
        bucket = self.buckets[bi]
        if bucket.ready[i]:
            return
        t0 = time.perf_counter()
        bucket.views[i][...] = param.grad
        bucket.ready[i] = True
        bucket.pending -= 1
        t1 = time.perf_counter()
        self.timings["copy_s"] += t1 - t0
        if bucket.pending == 0 and bi == self.next_launch:
            self._launch_ready()
        elif self.next_launch:  # drive the messages in flight (MPI has no progress thread)
            in_flight = [b.request for b in self.buckets[:self.next_launch]]
            self.group.MPI.Request.Testall(in_flight)
        self.timings["launch_s"] += time.perf_counter() - t1

    def _launch_ready(self):
        while self.next_launch < len(self.buckets) and \
                self.buckets[self.next_launch].pending == 0:
            bucket = self.buckets[self.next_launch]
            bucket.request = C.iall_reduce(bucket.flat, "sum", self.group)
            self.next_launch += 1

    def _finish(self):
        """End of backward: send what is left (a parameter without a gradient on this rank
        counts as zeros), wait, average and write the gradients back."""
        t0 = time.perf_counter()
        try:
            for bucket in self.buckets[self.next_launch:]:
                for i, done in enumerate(bucket.ready):
                    if not done:
                        bucket.views[i][...] = 0
                bucket.pending = 0
            self._launch_ready()
            t1 = time.perf_counter()
            C.wait([b.request for b in self.buckets],
                   f"gradient all-reduce ({len(self.buckets)} buckets)", self.group)
            t2 = time.perf_counter()
            for bucket in self.buckets:
                np.divide(bucket.flat, self.size, out=bucket.flat)
                for p, avg in zip(bucket.params, bucket.views):
                    if p.grad is None or p.grad.shape != avg.shape:
                        p.grad = avg.copy()
                    else:
                        p.grad[...] = avg
        finally:
            self.active = False
            self.next_launch = 0
            for bucket in self.buckets:
                bucket.reset()
        t3 = time.perf_counter()
        self.reductions += 1
        tm = self.timings
        tm["backward_passes"] += 1
        tm["launch_s"] += t1 - t0
        tm["wait_s"] += t2 - t1
        tm["copy_s"] += t3 - t2


class DistributedDataParallel(Module):
    """Data-parallel training over the ranks of an MPI job, as ``torch.nn.parallel.
    DistributedDataParallel``.

    Wrap the model on every rank after :func:`~fastconv.distributed.init_process_group`;
    feed each rank its own shard of the data (``DistributedSampler``). Rank 0's parameters
    and buffers are copied to every rank here; after every ``backward()`` each parameter's
    ``.grad`` is the mean over ranks of the per-rank gradients, so with per-rank batch B and
    K ranks an optimiser step equals one process's step on the K x B batch (BatchNorm
    statistics stay per rank unless the model uses :class:`SyncBatchNorm`).

    Parameters
    ----------
    module : fastconv.nn.Module
        Its parameters that require grad are reduced (cast it to its final dtype first).
        The hooks are on the parameters, so backward through ``module`` called directly
        is reduced too. A parameter that gets no gradient on a rank counts as zeros there.
    bucket_cap_mb : float, default 25
        Largest gradient message (PyTorch's default); smaller buckets start sending earlier
        in backward, at the cost of more messages.
    broadcast_buffers : bool, default True
        As PyTorch: before each training-mode forward through this wrapper, copy rank 0's
        buffers (BatchNorm running statistics) to every rank.

    Attributes
    ----------
    module : the wrapped model. As in PyTorch, the wrapper's ``state_dict()`` keys start
        with ``module.``; save ``ddp.module.state_dict()`` (on rank 0) for a checkpoint that
        loads without DDP.
    timings : dict
        Seconds spent over all backward passes so far copying gradients into and out of
        the buckets, starting messages, and waiting after backward for the messages still
        in flight (``wait_s``: the communication that overlapping did not hide, plus any
        wait for slower ranks).

    Examples
    --------
    >>> import fastconv.distributed as dist                           # doctest: +SKIP
    >>> dist.init_process_group()
    >>> model = dist.DistributedDataParallel(fc.models.resnet20())
    >>> loss = F.cross_entropy(model(x), y); loss.backward()  # grads averaged over ranks
    """

    def __init__(self, module, bucket_cap_mb=25, broadcast_buffers=True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected a fastconv.nn.Module, got "
                            f"{type(module).__name__}")
        if not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: expected bucket_cap_mb > 0, got "
                             f"{bucket_cap_mb!r}")
        group = C._need_group("DistributedDataParallel")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        params = [p for p in module.parameters() if p.requires_grad]
        if len({id(p) for p in params}) != len(params):
            raise ValueError("DistributedDataParallel: a parameter is listed twice")
        C.broadcast_arrays([p.data for p in module.parameters()] + self._buffer_arrays(),
                           0, "DistributedDataParallel: broadcast of rank 0's parameters "
                              "and buffers")
        object.__setattr__(self, "_reducer", _Reducer(params, bucket_cap_mb, group))

    def _buffer_arrays(self):
        return [b for b in self.module.buffers() if b is not None]

    @property
    def timings(self):
        return self._reducer.timings

    def forward(self, *args, **kwargs):
        if self.broadcast_buffers and self.training:
            self.sync_buffers()
        return self.module(*args, **kwargs)

    def sync_buffers(self):
        """Copy rank 0's buffers to every rank (a collective: call it on every rank)."""
        C.broadcast_arrays(self._buffer_arrays(), 0, "broadcast of rank 0's buffers")

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward passes accumulate local gradients without communicating; the
        first backward after it averages the accumulated sum (gradient accumulation)."""
        previous = self._reducer.enabled
        self._reducer.enabled = False
        try:
            yield
        finally:
            self._reducer.enabled = previous

    def extra_repr(self):
        sizes = ", ".join(f"{b.flat.nbytes / _MB:.2f}" for b in self._reducer.buckets)
        return f"world_size={self._reducer.size}, buckets MB=[{sizes}]"


def average_gradients(params, bucket_cap_mb=25):
    """Replace each ``.grad`` of ``params`` by its mean over ranks, now (blocking).

    The same buckets as :class:`DistributedDataParallel`, but all sent after backward
    instead of during it. A parameter without a gradient counts as zeros (and gets the
    mean). Every rank must pass the same parameters in the same order.
    """
    group = C._need_group("average_gradients")
    params = [p for p in params if p.requires_grad]
    cap = max(1, int(bucket_cap_mb * _MB))
    buckets = []
    for members in _make_buckets(params, cap, min(cap, _MB)):
        bucket = _Bucket(members)
        for p, view in zip(members, bucket.views):
            view[...] = 0 if p.grad is None else p.grad
        bucket.request = C.iall_reduce(bucket.flat, "sum", group)
        buckets.append(bucket)
    C.wait([b.request for b in buckets], "gradient all-reduce", group)
    for bucket in buckets:
        np.divide(bucket.flat, group.size, out=bucket.flat)
        for p, view in zip(bucket.params, bucket.views):
            p.grad = view.copy()
