"""DataLoader batching and shuffling; Subset and random_split."""
import numpy as np
import pytest

import fastconv
from fastconv import Tensor
from fastconv.data import DataLoader, Subset, SyntheticShapes, random_split
from fastconv.data import transforms as T


class Indexed:
    """Sample i is a (1, 2, 2) image filled with i, label i % 7; no get_batch."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.full((1, 2, 2), i, dtype=np.float32), i % 7


class IndexedBatched(Indexed):
    def get_batch(self, indices):
        idx = np.asarray(indices)
        x = np.broadcast_to(idx[:, None, None, None].astype(np.float32), (len(idx), 1, 2, 2))
        return x.copy(), idx % 7


def _epoch_ids(loader):
    return np.concatenate([x.data[:, 0, 0, 0].astype(np.int64) for x, _ in loader])


@pytest.mark.parametrize("cls", [Indexed, IndexedBatched])
def test_batches_shapes_dtypes(cls):
    loader = DataLoader(cls(10), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert [x.shape for x, _ in batches] == [(4, 1, 2, 2), (4, 1, 2, 2), (2, 1, 2, 2)]
    for x, y in batches:
        assert isinstance(x, Tensor) and isinstance(y, Tensor)
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert not x.requires_grad and not y.requires_grad
        np.testing.assert_array_equal(y.data, x.data[:, 0, 0, 0].astype(np.int64) % 7)
    np.testing.assert_array_equal(_epoch_ids(loader), np.arange(10))
    dropped = DataLoader(cls(10), batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [x.shape[0] for x, _ in dropped] == [4, 4]
    assert len(DataLoader(cls(8), batch_size=4, drop_last=True)) == 2
    assert len(DataLoader(cls(3), batch_size=4, drop_last=True)) == 0


def test_shuffle_each_sample_once_new_order_each_epoch():
    loader = DataLoader(IndexedBatched(103), batch_size=10, shuffle=True, seed=5)
    e0, e1 = _epoch_ids(loader), _epoch_ids(loader)
    for ids in (e0, e1):
        np.testing.assert_array_equal(np.sort(ids), np.arange(103))
    assert not np.array_equal(e0, e1)
    again = DataLoader(IndexedBatched(103), batch_size=10, shuffle=True, seed=5)
    np.testing.assert_array_equal(_epoch_ids(again), e0)
    np.testing.assert_array_equal(_epoch_ids(again), e1)
    again.set_epoch(1)
    np.testing.assert_array_equal(_epoch_ids(again), e1)
    other = DataLoader(IndexedBatched(103), batch_size=10, shuffle=True, seed=6)
    assert not np.array_equal(_epoch_ids(other), e0)
    # drop_last with shuffling: full batches of distinct samples.
    dl = DataLoader(IndexedBatched(103), batch_size=10, shuffle=True, drop_last=True, seed=1)
    ids = _epoch_ids(dl)
    assert len(ids) == 100 and len(set(ids.tolist())) == 100


def test_shuffle_reproducible_with_manual_seed():
    fastconv.manual_seed(11)
    a = DataLoader(IndexedBatched(50), batch_size=8, shuffle=True)
    fastconv.manual_seed(11)
    b = DataLoader(IndexedBatched(50), batch_size=8, shuffle=True)
    assert a.seed == b.seed
    np.testing.assert_array_equal(_epoch_ids(a), _epoch_ids(b))
    c = DataLoader(IndexedBatched(50), batch_size=8, shuffle=True)
    assert c.seed != b.seed


def test_get_batch_and_stacking_agree_with_transform():
    ds = SyntheticShapes(40, seed=2, transform=T.Normalize(0.5, 0.25))

    class NoBatch:
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            return ds[i]

    fast = [(x.data, y.data) for x, y in DataLoader(ds, batch_size=16, shuffle=True, seed=0)]
    slow = [(x.data, y.data) for x, y in DataLoader(NoBatch(), batch_size=16, shuffle=True,
                                                    seed=0)]
    for (xf, yf), (xs, ys) in zip(fast, slow):
        np.testing.assert_allclose(xf, xs, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(yf, ys)
    assert fast[0][0].min() < 0  # the transform ran


def test_validation():
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size"):
            DataLoader(Indexed(4), batch_size=bad)
    with pytest.raises(TypeError, match="shuffle"):
        DataLoader(Indexed(4), shuffle="yes")
    with pytest.raises(ValueError, match="seed"):
        DataLoader(Indexed(4), seed=-3)
    with pytest.raises(TypeError, match="dataset"):
        DataLoader(object())
    with pytest.raises(ValueError):
        DataLoader(Indexed(4)).set_epoch(-1)


def test_random_split_and_subset():
    ds = IndexedBatched(50)
    train, val = random_split(ds, [40, 10], seed=3)
    assert len(train) == 40 and len(val) == 10
    ids = np.concatenate([train.indices, val.indices])
    np.testing.assert_array_equal(np.sort(ids), np.arange(50))
    again, _ = random_split(ds, [40, 10], seed=3)
    np.testing.assert_array_equal(again.indices, train.indices)
    assert not np.array_equal(random_split(ds, [40, 10], seed=4)[0].indices, train.indices)
    x, y = val.get_batch([0, 2])
    np.testing.assert_array_equal(x[:, 0, 0, 0], val.indices[[0, 2]])
    assert val[1][1] == val.indices[1] % 7
    assert [len(s) for s in random_split(ds, [0.5, 0.3, 0.2])] == [25, 15, 10]
    assert sum(len(s) for s in random_split(Indexed(7), [0.5, 0.5])) == 7
    loader_ids = _epoch_ids(DataLoader(val, batch_size=3))
    np.testing.assert_array_equal(loader_ids, val.indices)
    shapes = SyntheticShapes(30)
    sub = Subset(shapes, [3, 1])
    np.testing.assert_array_equal(sub.targets, shapes.targets[[3, 1]])
    assert sub.classes == shapes.classes
    with pytest.raises(ValueError):
        random_split(ds, [40, 11])
    with pytest.raises(IndexError):
        Subset(ds, [50])
