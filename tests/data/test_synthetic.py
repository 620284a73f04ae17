"""SyntheticShapes: deterministic, balanced, in range, and the classes really differ."""
import numpy as np
import pytest

from fastconv.data import SyntheticShapes
from fastconv.data.synthetic import SHAPES


@pytest.fixture(scope="module")
def shapes():
    return SyntheticShapes(2000, seed=0)


def test_deterministic_from_seed(shapes):
    again = SyntheticShapes(2000, seed=0)
    np.testing.assert_array_equal(again.data, shapes.data)
    np.testing.assert_array_equal(again.targets, shapes.targets)
    other = SyntheticShapes(2000, seed=1)
    assert not np.array_equal(other.data, shapes.data)
    assert not np.array_equal(other.targets, shapes.targets)


def test_balance_dtypes_range(shapes):
    assert len(shapes) == 2000
    assert shapes.data.shape == (2000, 28, 28) and shapes.data.dtype == np.uint8
    assert shapes.targets.dtype == np.int64
    assert np.bincount(shapes.targets).tolist() == [200] * 10
    assert shapes.classes == SHAPES and len(set(shapes.classes)) == 10
    x, y = shapes[0]
    assert x.shape == (1, 28, 28) and x.dtype == np.float32 and type(y) is int
    xb, yb = shapes.get_batch(np.arange(100))
    assert xb.shape == (100, 1, 28, 28) and xb.dtype == np.float32 and yb.dtype == np.int64
    assert 0 <= xb.min() and xb.max() <= 1
    np.testing.assert_array_equal(xb[0], x)
    empty_x, empty_y = shapes.get_batch([])
    assert empty_x.shape == (0, 1, 28, 28) and empty_y.shape == (0,)
    # Shapes stand out from the background: every image has a bright part and a dark part.
    flat = shapes.data.reshape(len(shapes), -1).astype(np.float32) / 255
    assert (flat.max(axis=1) > 0.45).all() and (np.median(flat, axis=1) < 0.35).all()
    # Not all images of a class are the same: position and scale vary.
    assert np.std(flat[shapes.targets == 0], axis=0).mean() > 0.1


def test_classes_are_distinguishable(shapes):
    """A nearest-class-mean classifier on raw pixels (no learning, no translation invariance)
    already does far better than chance; a CNN only has to do better still."""
    test = SyntheticShapes(500, seed=7)
    train_x = shapes.data.reshape(len(shapes), -1).astype(np.float32)
    means = np.stack([train_x[shapes.targets == c].mean(axis=0) for c in range(10)])
    test_x = test.data.reshape(len(test), -1).astype(np.float32)
    dist = ((test_x[:, None, :] - means[None]) ** 2).sum(axis=-1)
    accuracy = (dist.argmin(axis=1) == test.targets).mean()
    assert accuracy > 0.4, accuracy


def test_options_and_validation():
    ds = SyntheticShapes(30, size=16, seed=3, num_classes=3)
    assert ds.data.shape == (30, 16, 16) and ds.classes == SHAPES[:3]
    assert np.bincount(ds.targets).tolist() == [10, 10, 10]
    odd = SyntheticShapes(13, num_classes=4)
    assert sorted(np.bincount(odd.targets).tolist()) == [3, 3, 3, 4]
    assert len(SyntheticShapes(0)) == 0
    big = SyntheticShapes(5, size=64)
    assert big.get_batch([0, 1])[0].shape == (2, 1, 64, 64)
    flipped = SyntheticShapes(8, transform=lambda x: 1 - x)
    plain = SyntheticShapes(8)
    np.testing.assert_array_equal(flipped.get_batch([2])[0], 1 - plain.get_batch([2])[0])
    np.testing.assert_array_equal(flipped[2][0], 1 - plain[2][0])
    for kwargs in ({"n": -1}, {"n": 10, "size": 4}, {"n": 10, "num_classes": 11},
                   {"n": 10, "num_classes": 1}):
        with pytest.raises(ValueError):
            SyntheticShapes(**kwargs)
    with pytest.raises(TypeError):
        SyntheticShapes(10.0)
