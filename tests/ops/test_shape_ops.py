"""flatten / cat / add through the autograd tape: against NumPy and the reference, float64
gradcheck, broadcasting, dtype promotion and argument validation."""
import numpy as np
import pytest

import fastconv as fc
from fctest import assert_close
from fastconv.functional.linear import add, cat, flatten
from fastconv.reference import linear as ref


@pytest.mark.parametrize("shape,start,end", [((2, 3, 4, 5), 1, -1), ((2, 3, 4, 5), 0, -1),
                                             ((2, 3, 4, 5), 1, 2), ((2, 3, 4, 5), -2, -1),
                                             ((2, 3, 4, 5), 2, 2), ((3,), 0, 0),
                                             ((0, 3, 4), 1, -1), ((), 0, -1)])
def test_flatten_shapes_and_gradient(shape, start, end, rng):
    x = fc.Tensor(rng.standard_normal(shape), requires_grad=True)
    y = flatten(x, start, end)
    expected = ref.flatten(x.data, start, end)
    assert y.shape == expected.shape
    assert np.array_equal(y.data, expected)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    assert np.array_equal(x.grad, g.reshape(shape))


def test_flatten_default_keeps_batch(rng):
    assert flatten(rng.standard_normal((4, 2, 3, 3))).shape == (4, 18)


def test_flatten_validation():
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"expected start_dim in \[-3, 2\] for a 3-D input, "
                                         r"got 3"):
        flatten(x, 3)
    with pytest.raises(ValueError, match="expected start_dim <= end_dim"):
        flatten(x, 2, 1)
    with pytest.raises(TypeError, match="expected end_dim to be an int"):
        flatten(x, 1, 2.0)


@pytest.mark.parametrize("dim", [0, 1, -1, 2])
def test_cat_forward_and_split_gradient(dim, rng):
    shapes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    shapes = [tuple(s[:dim % 3]) + (k,) + tuple(s[dim % 3 + 1:]) for s, k in
              zip(shapes, (1, 3, 2))]
    ts = [fc.Tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]
    y = cat(ts, dim)
    assert np.array_equal(y.data, ref.cat([t.data for t in ts], dim))
    g = rng.standard_normal(y.shape)
    y.backward(g)
    for t, gr in zip(ts, ref.cat_backward(g, [s[dim % 3] for s in shapes], dim % 3)):
        assert np.array_equal(t.grad, gr)


def test_cat_gradcheck_with_a_constant(rng):
    a = fc.Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    b = rng.standard_normal((2, 2))
    c = fc.Tensor(rng.standard_normal((2, 1)), requires_grad=True)
    assert fc.gradcheck(lambda a, c: cat([a, b, c], dim=1) * cat([c, a, b], dim=1), [a, c])


def test_cat_promotes_as_numpy_and_accepts_lists(rng):
    a = fc.Tensor(np.ones((2, 2), np.float32), requires_grad=True)
    y = cat([a, np.zeros((1, 2), np.float64), [[5, 6]]])
    assert y.dtype == np.float64 and y.shape == (4, 2)
    y.sum().backward()
    assert a.grad.dtype == np.float32 and np.array_equal(a.grad, np.ones((2, 2)))
    assert cat((np.ones(2, np.float32), np.ones(3, np.float32))).dtype == np.float32


def test_cat_validation():
    with pytest.raises(TypeError, match="expected a list or tuple of tensors, got Tensor"):
        cat(fc.tensor(np.ones((2, 2))))
    with pytest.raises(ValueError, match="expected a non-empty list"):
        cat([])
    with pytest.raises(ValueError, match="got a 0-D tensor at position 1"):
        cat([np.ones(2), np.float64(1.0)])
    with pytest.raises(ValueError, match=r"expected every tensor to have 2 dims, got shape "
                                         r"\(3,\) at position 1"):
        cat([np.ones((2, 3)), np.ones(3)])
    with pytest.raises(ValueError, match=r"same shape except along dim 0, got \(2, 3\) at "
                                         r"position 0 and \(2, 4\) at position 1"):
        cat([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match=r"expected dim in \[-2, 1\]"):
        cat([np.ones((2, 3))], dim=2)


@pytest.mark.parametrize("alpha", [1, 2, -0.5])
@pytest.mark.parametrize("sa,sb", [((2, 3), (2, 3)), ((2, 3), (3,)), ((4, 1, 3), (2, 1)),
                                   ((), (2, 2))])
def test_add_matches_reference_with_broadcasting(sa, sb, alpha, rng):
    a = fc.Tensor(rng.standard_normal(sa), requires_grad=True)
    b = fc.Tensor(rng.standard_normal(sb), requires_grad=True)
    y = add(a, b, alpha=alpha)
    assert_close(y.data, ref.add(a.data, b.data, alpha))
    g = rng.standard_normal(y.shape)
    y.backward(g)
    ga, gb = ref.add_backward(g, sa, sb, alpha)
    assert_close(a.grad, ga)
    assert_close(b.grad, gb)
    a.grad = b.grad = None
    assert fc.gradcheck(lambda a, b: add(a, b, alpha=alpha), [a, b])


def test_add_scalars_keep_float32_and_constants_get_no_grad():
    a = fc.Tensor(np.ones(3, np.float32), requires_grad=True)
    y = add(a, 2.5, alpha=2)
    assert y.dtype == np.float32 and np.allclose(y.data, 6.0)
    z = add(1.0, a, alpha=3)
    assert z.dtype == np.float32
    z.sum().backward()
    assert np.array_equal(a.grad, np.full(3, 3.0, np.float32))
    assert add(np.ones(2, np.float32), np.ones(2, np.float64)).dtype == np.float64


def test_add_validation():
    with pytest.raises(ValueError, match=r"expected broadcastable shapes, got \(2, 3\) and "
                                         r"\(4,\)"):
        add(np.ones((2, 3)), np.ones(4))
    with pytest.raises(TypeError, match="expected alpha to be a number"):
        add(np.ones(2), np.ones(2), alpha="2")
    with pytest.raises(TypeError, match="expected an integer alpha for integer inputs"):
        add(np.ones(2, np.int64), np.ones(2, np.int64), alpha=0.5)
