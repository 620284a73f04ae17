"""``DataLoader``: batches of ``fastconv.Tensor`` from a dataset; ``Subset``, ``random_split``.

Shuffling: the order of epoch ``e`` is a permutation drawn from
``np.random.default_rng((seed, e))``, a pure function of the loader's seed and the epoch
number. Each ``iter()`` uses the current epoch and then advances it, so successive epochs
differ, the whole sequence is reproducible for a given seed, and a resumed run picks up the
same orders after ``set_epoch(e)``. With ``seed=None`` the seed is drawn once, at
construction, from ``fastconv._config.default_rng()``: ``fastconv.manual_seed`` before
building the loader makes it reproducible too.
"""
import numbers

import numpy as np

from .. import _config
from ..tensor import Tensor

__all__ = ["DataLoader", "Subset", "random_split"]


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def fetch_batch(dataset, indices):
    """(images, int64 labels) for ``indices``: ``dataset.get_batch`` when it has one, else
    ``dataset[i]`` for each index, stacked."""
    get_batch = getattr(dataset, "get_batch", None)
    if get_batch is not None:
        x, y = get_batch(indices)
        return np.ascontiguousarray(x), np.asarray(y, dtype=np.int64)
    samples = [dataset[int(i)] for i in indices]
    if not samples:
        raise ValueError("fetch_batch: empty batch from a dataset without get_batch")
    xs, ys = zip(*samples)
    return np.stack([np.asarray(x) for x in xs]), np.asarray(ys, dtype=np.int64)


class Subset:
    """The samples of ``dataset`` at ``indices``, in that order (``dataset`` is not copied).

    Supports ``len``, ``subset[i]``, ``get_batch`` and, when ``dataset`` has them,
    ``targets`` and ``classes``.
    """

    def __init__(self, dataset, indices):
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise TypeError(f"Subset: expected a 1-D integer sequence of indices, got shape "
                            f"{indices.shape} dtype {indices.dtype}")
        n = len(dataset)
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"Subset: indices out of range for a dataset of {n} samples")
        self.dataset = dataset
        self.indices = indices.astype(np.int64) % max(n, 1)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def get_batch(self, indices):
        return fetch_batch(self.dataset, self.indices[np.asarray(indices, dtype=np.int64)])

    @property
    def targets(self):
        return np.asarray(self.dataset.targets)[self.indices]

    @property
    def classes(self):
        return self.dataset.classes

    def __repr__(self):
        return f"Subset({len(self)} of {type(self.dataset).__name__} of {len(self.dataset)})"


def random_split(dataset, lengths, seed=0):
    """Split ``dataset`` into non-overlapping random ``Subset``s of the given ``lengths``.

    Parameters
    ----------
    dataset : sized dataset
    lengths : sequence of int (summing to ``len(dataset)``) or of fractions (summing to 1;
        the remainder of the rounding goes to the first subsets, one each, as in PyTorch)
    seed : int, default 0
        The permutation is ``np.random.default_rng(seed).permutation(len(dataset))``.

    Examples
    --------
    >>> train, val = random_split(MNIST(root), [55000, 5000])
    """
    n = len(dataset)
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: expected at least one length")
    if all(_is_int(v) for v in lengths):
        lengths = [int(v) for v in lengths]
    elif all(isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v <= 1
             for v in lengths) and abs(sum(lengths) - 1) < 1e-6:
        sizes = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        lengths = sizes
    else:
        raise ValueError(f"random_split: expected ints summing to {n} or fractions summing "
                         f"to 1, got {lengths}")
    if any(v < 0 for v in lengths) or sum(lengths) != n:
        raise ValueError(f"random_split: lengths {lengths} must be >= 0 and sum to the "
                         f"dataset size {n}")
    if not _is_int(seed):
        raise TypeError(f"random_split: expected an int seed, got {type(seed).__name__}")
    order = np.random.default_rng(int(seed)).permutation(n)
    bounds = np.cumsum([0] + lengths)
    return [Subset(dataset, order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


class DataLoader:
    """Iterate over ``dataset`` in batches of ``(Tensor x, Tensor y)``.

    Parameters
    ----------
    dataset : object with ``__len__`` and ``__getitem__`` (and, for speed, ``get_batch``)
        ``dataset[i]`` -> (image (C, H, W), int label); ``get_batch(indices)`` -> (images
        (B, C, H, W), labels (B,)), used when present.
    batch_size : int, default 1
    shuffle : bool, default False
        A new random order each epoch (see the module docstring); else ``0 .. N-1``.
    drop_last : bool, default False
        Drop the last batch when it is smaller than ``batch_size``.
    seed : int, optional
        Seed of the shuffling orders; None draws one from ``fastconv._config.default_rng()``.

    Yields
    ------
    x : Tensor, the dataset's images (float32 (B, C, H, W) for fastconv's datasets)
    y : Tensor, int64 (B,)

    Examples
    --------
    >>> loader = DataLoader(MNIST(root), batch_size=64, shuffle=True, seed=0)
    >>> for x, y in loader:
    ...     loss = F.cross_entropy(model(x), y)
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None):
        if not hasattr(dataset, "__len__") or not (hasattr(dataset, "__getitem__")
                                                   or hasattr(dataset, "get_batch")):
            raise TypeError(f"DataLoader: expected a dataset with __len__ and __getitem__ or "
                            f"get_batch, got {type(dataset).__name__}")
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"DataLoader: expected batch_size a positive int, got "
                             f"{batch_size!r}")
        for name, value in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"DataLoader: expected {name} a bool, got {value!r}")
        if seed is None:
            seed = int(_config.default_rng().integers(2 ** 63))
        elif not _is_int(seed) or seed < 0:
            raise ValueError(f"DataLoader: expected seed None or an int >= 0, got {seed!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch):
        """Make the next ``iter()`` use epoch ``epoch``'s order (e.g. when resuming)."""
        if not _is_int(epoch) or epoch < 0:
            raise ValueError(f"set_epoch: expected an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self):
        n = len(self.dataset)
        if self.drop_last:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def _order(self, epoch):
        n = len(self.dataset)
        if self.shuffle:
            return np.random.default_rng((self.seed, epoch)).permutation(n)
        return np.arange(n)

    def __iter__(self):
        # Draw this epoch's order now, not at the first next(), so that epochs advance
        # with each iter() call.
        order = self._order(self.epoch)
        self.epoch += 1
        return self._batches(order)

    def _batches(self, order):
        stop = len(self) * self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            x, y = fetch_batch(self.dataset, order[start:start + self.batch_size])
            yield Tensor(x), Tensor(y)

    def __repr__(self):
        return (f"DataLoader({type(self.dataset).__name__}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed})")
