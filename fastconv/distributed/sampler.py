"""``DistributedSampler`` (each rank's share of a dataset) and a loader over it.

The shards of one epoch interleave one permutation: rank r takes positions r, r + K,
r + 2K, ... of ``np.random.default_rng((seed, epoch)).permutation(N)``, the very order a
``fastconv.data.DataLoader(dataset, shuffle=True, seed=seed)`` uses in that epoch. So batch
t of the K ranks (batch size B each) together hold exactly the samples of batch t of a
single-process loader with batch size K x B: a data-parallel run sees the same batches as
the single-process run it stands for.
"""
import math
import numbers

import numpy as np

from ..data.loader import fetch_batch
from ..tensor import Tensor
from . import collectives as C

__all__ = ["DistributedSampler", "DistributedDataLoader"]


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class DistributedSampler:
    """Indices of this rank's shard of ``dataset``, as ``torch.utils.data.distributed.
    DistributedSampler``.

    Parameters
    ----------
    dataset : sized
    num_replicas, rank : int, optional
        Default: the world size and rank of the initialised process group.
    shuffle : bool, default True
        A new order each epoch (call :meth:`set_epoch` before each), the same on every rank
        for a given ``seed`` and epoch; else ``0 .. N-1``.
    seed : int, default 0
    drop_last : bool, default False
        False: the order is padded with its own first indices up to a multiple of the world
        size, so every rank gets ``ceil(N / K)`` samples (a few are seen twice per epoch).
        True: the tail is dropped instead, ``floor(N / K)`` each.

    Examples
    --------
    >>> sampler = DistributedSampler(train_set, shuffle=True, seed=0)   # doctest: +SKIP
    >>> sampler.set_epoch(epoch); indices = list(sampler)
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        if num_replicas is None:
            num_replicas = C.get_world_size()
        if rank is None:
            rank = C.get_rank()
        if not _is_int(num_replicas) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: expected num_replicas an int >= 1, got "
                             f"{num_replicas!r}")
        if not _is_int(rank) or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: expected rank in [0, {num_replicas}), "
                             f"got {rank!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"DistributedSampler: expected seed an int >= 0, got {seed!r}")
        self.dataset = dataset
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.seed = int(seed)
        self.epoch = 0
        n = len(dataset)
        if self.drop_last:
            self.num_samples = n // self.num_replicas
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        """Use epoch ``epoch``'s order (call it on every rank at the start of each epoch)."""
        if not _is_int(epoch) or epoch < 0:
            raise ValueError(f"set_epoch: expected an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch (int64 ndarray of ``len(self)``)."""
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(n)
        else:
            order = np.arange(n)
        if self.total_size > n:  # pad by repeating the order (several times if N < K)
            order = np.resize(order, self.total_size) if n else order
        order = order[:self.total_size]
        return order[self.rank::self.num_replicas].astype(np.int64)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples

    def __repr__(self):
        return (f"DistributedSampler({len(self.dataset)} samples, rank {self.rank} of "
                f"{self.num_replicas}, shuffle={self.shuffle}, seed={self.seed})")


class DistributedDataLoader:
    """Batches of ``(Tensor x, Tensor y)`` from this rank's shard of ``dataset``: what
    ``torch.utils.data.DataLoader(dataset, batch_size, sampler=DistributedSampler(...))``
    gives in PyTorch.

    Parameters
    ----------
    dataset : dataset as for ``fastconv.data.DataLoader``
    batch_size : int, default 1
        Per rank: the global batch is ``batch_size x world size``.
    sampler : DistributedSampler, optional
        Default: ``DistributedSampler(dataset)`` (shuffled, seed 0).
    drop_last : bool, default False
        Drop this rank's last batch when it is smaller than ``batch_size``.

    ``set_epoch(e)`` and ``seed`` go to the sampler; ``num_samples`` is this rank's share of
    the samples. Unlike ``DataLoader``, iterating does not advance the epoch: call
    ``set_epoch`` at the start of every epoch, as in PyTorch (``fastconv``'s ``Trainer``
    does).
    """

    def __init__(self, dataset, batch_size=1, sampler=None, drop_last=False):
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"DistributedDataLoader: expected batch_size a positive int, "
                             f"got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.sampler = DistributedSampler(dataset) if sampler is None else sampler
        self.drop_last = bool(drop_last)

    @property
    def seed(self):
        return self.sampler.seed

    @seed.setter
    def seed(self, value):
        self.sampler.seed = int(value)

    @property
    def num_samples(self):
        return len(self.sampler)

    def set_epoch(self, epoch):
        self.sampler.set_epoch(epoch)

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        indices = self.sampler.indices()
        stop = len(self) * self.batch_size if self.drop_last else len(indices)
        for start in range(0, stop, self.batch_size):
            x, y = fetch_batch(self.dataset, indices[start:start + self.batch_size])
            yield Tensor(x), Tensor(y)

    def __repr__(self):
        return (f"DistributedDataLoader({type(self.dataset).__name__}, batch_size="
                f"{self.batch_size}, {self.sampler!r})")
