"""Where the training loop meets the process layout: the seams a distributed run replaces.

:class:`LocalContext` is the single-process case. A data-parallel run (``mpirun -n K
fastconv train ... --distributed``) supplies a context with the same members, and the
training loop needs nothing else changed:

* ``is_main_process``: only the main process (rank 0) writes checkpoints and logs and prints;
* ``average_gradients(params)``: called after ``backward()``, before ``optimizer.step()``;
* ``reduce_sums(array)``: per-epoch metric sums (loss x images, correct, images) summed
  across processes, so every rank reports the global figures;
* ``broadcast_buffers(model)``: before evaluation, every process takes the main process's
  buffers (BatchNorm running statistics, which stay per process in training, as in
  PyTorch), so all evaluate, and the main process checkpoints, one and the same model;
* the training loader is built by the caller: a distributed run passes one that iterates
  this rank's shard (a ``DistributedSampler``); the loop calls its ``set_epoch(e)`` at the
  start of every epoch, so the shards reshuffle exactly as the single-process order does.

:class:`MPIContext` is the data-parallel case (``fastconv.distributed``; needs mpi4py).
"""
import numpy as np

__all__ = ["LocalContext", "MPIContext"]


class LocalContext:
    """One process: the main one, nothing to average or reduce."""

    rank = 0
    world_size = 1
    is_main_process = True

    def average_gradients(self, params):
        """Make every process hold the mean gradient (a no-op with one process)."""

    def reduce_sums(self, values):
        """Element-wise sum of ``values`` (float64 array) over processes."""
        return np.asarray(values, dtype=np.float64)

    def barrier(self):
        """Wait for every process (a no-op with one process)."""

    def broadcast_buffers(self, model):
        """Give every process the main process's buffers (a no-op with one process)."""

    def __repr__(self):
        return "LocalContext(rank=0, world_size=1)"


class MPIContext:
    """The ranks of an MPI job: rank 0 is the main process.

    Joins the job (``fastconv.distributed.init_process_group``) on construction. Call
    :meth:`prepare` with the model before training: it becomes data-parallel
    (``DistributedDataParallel``'s hooks on its parameters: rank 0's weights and buffers on
    every rank, gradients averaged while backward runs), while the model object, its
    ``state_dict`` and checkpoints stay those of the plain model.

    Parameters
    ----------
    timeout : float, optional
        Seconds a collective waits for the other ranks (default ``$FASTCONV_DIST_TIMEOUT``,
        else 300).

    Raises
    ------
    ImportError
        mpi4py is missing (the message says what to install).
    """

    def __init__(self, timeout=None):
        from .. import distributed
        distributed.init_process_group(timeout=timeout)
        self._dist = distributed
        self.rank = distributed.get_rank()
        self.world_size = distributed.get_world_size()
        self.is_main_process = self.rank == 0
        self.ddp = None

    def default_threads(self):
        """Kernel threads per rank that do not oversubscribe the machine (at least 1)."""
        return self._dist.default_threads()

    def prepare(self, model, bucket_cap_mb=25):
        """Make ``model`` data-parallel in place (see the class docstring); returns it."""
        self.ddp = self._dist.DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb,
                                                      broadcast_buffers=False)
        self._reductions = self.ddp._reducer.reductions
        return model

    def average_gradients(self, params):
        """Make every rank hold the mean gradient. After ``backward()`` through a model
        given to :meth:`prepare` that is already done (overlapped with backward); otherwise
        the gradients are averaged now."""
        if self.ddp is not None and self.ddp._reducer.reductions != self._reductions:
            self._reductions = self.ddp._reducer.reductions
            return
        self._dist.average_gradients(params)

    def reduce_sums(self, values):
        """Element-wise sum of ``values`` (float64 array) over ranks."""
        return self._dist.all_reduce(np.array(values, dtype=np.float64), "sum")

    def barrier(self):
        self._dist.barrier()

    def broadcast_buffers(self, model):
        """Copy rank 0's buffers to every rank."""
        self._dist.collectives.broadcast_arrays(
            [b for b in model.buffers() if b is not None], 0, "broadcast of rank 0's buffers")

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` (picklable) on every rank."""
        return self._dist.broadcast_object(obj)

    def any_failed(self, code):
        """Exchange exit codes: (the largest over ranks, the lowest rank with a non-zero
        code or None). Lets every rank stop together after a failure in setup."""
        codes = self._dist.all_gather(np.array([int(code)], np.int64))[:, 0]
        failed = np.flatnonzero(codes)
        return int(codes.max()), (int(failed[0]) if failed.size else None)

    def abort(self, code):
        """End every rank now with exit code ``code`` (after a failure in training, when the
        other ranks may be waiting in a collective)."""
        self._dist.abort(code)

    def shard(self, dataset):
        """This rank's share of ``dataset`` for evaluation: every world-size-th sample from
        position ``rank``, without padding, so the reduced metrics count each sample once."""
        from ..data import Subset
        return Subset(dataset, np.arange(self.rank, len(dataset), self.world_size))

    def train_loader(self, dataset, batch_size, seed):
        """Batches of this rank's shard, reshuffled each epoch (``DistributedSampler``)."""
        d = self._dist
        return d.DistributedDataLoader(dataset, batch_size, sampler=d.DistributedSampler(
            dataset, self.world_size, self.rank, shuffle=True, seed=seed))

    def __repr__(self):
        return f"MPIContext(rank={self.rank}, world_size={self.world_size})"
