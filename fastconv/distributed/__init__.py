"""Data-parallel training over processes and machines, on MPI (mpi4py), in PyTorch DDP's
shape. Optional: ``pip install 'fastconv[mpi]'`` brings mpi4py and MPICH.

Start K processes with ``mpiexec -n K python train.py`` (or ``mpiexec -n K fastconv train
... --distributed``); in each::

    import fastconv.distributed as dist
    dist.init_process_group()                          # rank, world size from MPI
    model = dist.SyncBatchNorm.convert_sync_batchnorm(model)   # optional: global BN stats
    model = dist.DistributedDataParallel(model)        # rank 0's weights everywhere
    loader = dist.DistributedDataLoader(train_set, batch_size=B,
                                        sampler=dist.DistributedSampler(train_set, seed=0))
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()    # gradients averaged over ranks
            optimizer.step()
    correct = dist.all_reduce(np.array([hits, seen]))  # metrics summed over ranks
    if dist.get_rank() == 0:
        fc.save(model.module.state_dict(), "model.npz")   # only rank 0 writes

Each rank should use its share of the cores: ``fc.set_num_threads(dist.default_threads())``.
Every collective has a deadline (``FASTCONV_DIST_TIMEOUT`` seconds, default 300): a rank that
dies or hangs makes the others fail with :class:`DistributedTimeoutError` and the job abort,
instead of waiting forever.

Importing this package does not need mpi4py; :func:`init_process_group` does, and says what
to install when it is missing. Everything else needs an initialised process group, except
:class:`SyncBatchNorm` (plain ``BatchNorm2d`` in a job of one) and
:class:`DistributedSampler` given ``num_replicas`` and ``rank``.
"""
from .collectives import (DEFAULT_TIMEOUT, MPI_MISSING, DistributedTimeoutError, abort,
                          all_gather, all_reduce, barrier, broadcast, broadcast_object,
                          default_threads, get_rank, get_world_size, init_process_group,
                          is_available, is_initialized)
from .ddp import DistributedDataParallel, average_gradients
from .sampler import DistributedDataLoader, DistributedSampler
from .sync_batchnorm import SyncBatchNorm

__all__ = ["init_process_group", "is_available", "is_initialized", "get_rank",
           "get_world_size", "default_threads", "all_reduce", "broadcast",
           "broadcast_object", "all_gather", "barrier", "abort", "DistributedDataParallel",
           "average_gradients", "SyncBatchNorm", "DistributedSampler",
           "DistributedDataLoader", "DistributedTimeoutError", "DEFAULT_TIMEOUT",
           "MPI_MISSING"]
