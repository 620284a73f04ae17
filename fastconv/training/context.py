"""Where the training loop meets the process layout: the seams a distributed run replaces.

:class:`LocalContext` is the single-process case. A data-parallel run (``mpirun -n K
fastconv train ... --distributed``) supplies a context with the same members, and the
training loop needs nothing else changed:

* ``is_main_process``: only the main process (rank 0) writes checkpoints and logs and prints;
* ``average_gradients(params)``: called after ``backward()``, before ``optimizer.step()``;
* ``reduce_sums(array)``: per-epoch metric sums (loss x images, correct, images) summed
  across processes, so every rank reports the global figures;
* the training loader is built by the caller: a distributed run passes one that iterates
  this rank's shard (a ``DistributedSampler``); the loop calls its ``set_epoch(e)`` at the
  start of every epoch, so the shards reshuffle exactly as the single-process order does.
"""
import numpy as np

__all__ = ["LocalContext"]


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

    def __repr__(self):
        return "LocalContext(rank=0, world_size=1)"
