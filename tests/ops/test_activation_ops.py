"""Activations, softmax, log_softmax and dropout through the autograd tape: reference,
float64 gradcheck, large logits, dropout statistics and seeding, odd layouts, validation."""
import numpy as np
import pytest

import fastconv as fc
from fctest import assert_close
from fastconv.functional import activation as A
from fastconv.reference import activations as ref

DTYPES = [np.float32, np.float64]

UNARY = {  # name: (op, reference forward, reference backward(gy, x, y))
    "relu": (A.relu, ref.relu, lambda gy, x, y: ref.relu_backward(gy, x)),
    "leaky_relu": (lambda t: A.leaky_relu(t, 0.2), lambda x: ref.leaky_relu(x, 0.2),
                   lambda gy, x, y: ref.leaky_relu_backward(gy, x, 0.2)),
    "leaky_relu_neg": (lambda t: A.leaky_relu(t, -0.3), lambda x: ref.leaky_relu(x, -0.3),
                       lambda gy, x, y: ref.leaky_relu_backward(gy, x, -0.3)),
    "elu": (lambda t: A.elu(t, 0.7), lambda x: ref.elu(x, 0.7),
            lambda gy, x, y: ref.elu_backward(gy, x, 0.7)),
    "sigmoid": (A.sigmoid, ref.sigmoid, lambda gy, x, y: ref.sigmoid_backward(gy, y)),
    "tanh": (A.tanh, ref.tanh, lambda gy, x, y: ref.tanh_backward(gy, y)),
    "softmax": (lambda t: A.softmax(t, 1), lambda x: ref.softmax(x, 1),
                lambda gy, x, y: ref.softmax_backward(gy, y, 1)),
    "log_softmax": (lambda t: A.log_softmax(t, -1), lambda x: ref.log_softmax(x, -1),
                    lambda gy, x, y: ref.log_softmax_backward(gy, y, -1)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(UNARY))
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7, 3), (1, 1, 1, 1)])
def test_matches_reference(name, shape, dtype, rng):
    op, fwd, bwd = UNARY[name]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    xt = fc.Tensor(x, requires_grad=True)
    y = op(xt)
    y.backward(gy)
    assert y.dtype == dtype and y.shape == shape
    y_ref = fwd(x)
    assert_close(y.data, y_ref, dtype, what="forward")
    assert_close(xt.grad, bwd(gy, x, y_ref), dtype, what="backward")


@pytest.mark.parametrize("name", list(UNARY))
def test_gradcheck(name, rng):
    x = rng.standard_normal((2, 3, 2, 3))
    x[np.abs(x) < 1e-3] = 0.5               # keep central differences off the kinks
    assert fc.gradcheck(UNARY[name][0], [fc.Tensor(x, requires_grad=True)])


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 2, 3), (4, 3), (2, 3, 4)])
def test_prelu_gradcheck_and_reference(shape, shared, rng):
    x = rng.standard_normal(shape)
    x[np.abs(x) < 1e-3] = 0.5
    w = rng.random(1 if shared else 3)
    xt, wt = fc.Tensor(x, requires_grad=True), fc.Tensor(w, requires_grad=True)
    assert fc.gradcheck(A.prelu, [xt, wt])
    gy = rng.standard_normal(shape)
    y = A.prelu(xt, wt)
    y.backward(gy)
    assert_close(y.data, ref.prelu(x, w), np.float64)
    gx, gw = ref.prelu_backward(gy, x, w)
    assert_close(xt.grad, gx, np.float64)
    assert_close(wt.grad, gw, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_large_logits_stay_finite(dtype):
    x = np.array([[1e4, 0, -1e4], [1e4, 1e4, 1e4 - 1]], dtype)
    xt = fc.Tensor(x, requires_grad=True)
    y = A.softmax(xt, dim=1)
    y.backward(np.ones_like(x))
    assert np.isfinite(y.data).all() and np.isfinite(xt.grad).all()
    assert_close(y.data.sum(axis=1), np.ones(2), dtype)
    xt2 = fc.Tensor(x, requires_grad=True)
    ls = A.log_softmax(xt2, dim=-1)
    ls.backward(np.ones_like(x))
    assert np.isfinite(ls.data).all() and np.isfinite(xt2.grad).all()
    assert ls.data[0, 0] == 0 and ls.data[0, 2] == -2e4


def test_sigmoid_and_relu_nan():
    x = np.array([np.nan, -1.0, 2.0])
    assert np.isnan(A.relu(x).data[0]) and np.isnan(A.sigmoid(x).data[0])
    assert np.isnan(A.tanh(x).data[0]) and np.isnan(A.elu(x).data[0])


def test_odd_layouts(rng):
    x = rng.standard_normal((4, 3, 5, 6)).astype(np.float32)
    for variant in (np.asfortranarray(x), x.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2),
                    np.repeat(x, 2, axis=3)[..., ::2]):
        for op in (A.relu, A.sigmoid, A.tanh, lambda t: A.elu(t, 1.0),
                   lambda t: A.prelu(t, np.full(3, 0.1, np.float32))):
            np.testing.assert_array_equal(op(variant).data, op(x).data)


def test_dropout_statistics_and_scaling(rng):
    fc.manual_seed(0)
    x = np.ones((200, 500), np.float32)
    xt = fc.Tensor(x, requires_grad=True)
    y = A.dropout(xt, p=0.3)
    kept = y.data != 0
    assert abs(kept.mean() - 0.7) < 0.01
    assert_close(y.data[kept], np.full(kept.sum(), 1 / 0.7, np.float32), np.float32)
    assert abs(y.data.mean() - 1) < 0.02
    y.backward(np.ones_like(x))
    np.testing.assert_array_equal(xt.grad, y.data)    # same mask, same scale


def test_dropout_determinism_and_special_cases():
    x = np.arange(1, 1001, dtype=np.float64)
    fc.manual_seed(7)
    a = A.dropout(x, 0.5).data
    fc.manual_seed(7)
    b = A.dropout(x, 0.5).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, A.dropout(x, 0.5).data)
    np.testing.assert_array_equal(A.dropout(x, 0.0).data, x)
    np.testing.assert_array_equal(A.dropout(x, 0.9, training=False).data, x)
    xt = fc.Tensor(x, requires_grad=True)
    z = A.dropout(xt, 1.0)
    z.sum().backward()
    assert (z.data == 0).all() and (xt.grad == 0).all()


def test_validation():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="int32"):
        A.relu(np.ones(3, np.int32))
    with pytest.raises(TypeError, match="float16"):
        A.sigmoid(np.ones(3, np.float16))
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range "
                                         r"of \[-2, 1\], but got 5\)"):
        A.softmax(x, 5)
    with pytest.raises(IndexError, match="but got -3"):
        A.log_softmax(x, -3)
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        A.dropout(x, 1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        A.dropout(x, -0.1)
    with pytest.raises(ValueError, match="size 1 or the number of channels"):
        A.prelu(x, np.ones(2, np.float32))
    with pytest.raises(TypeError, match="share one dtype"):
        A.prelu(x, np.ones(3, np.float64))
    with pytest.raises(TypeError, match="negative_slope"):
        A.leaky_relu(x, "0.1")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [((4, 3, 5, 5), (4, 3, 5, 5)), ((6,), (6,)),
                                    ((4, 3, 5, 5), (1, 3, 1, 1)), ((2, 3), ())])
def test_add_relu_is_relu_of_add(shapes, dtype, rng):
    """Values and both gradients bit for bit equal to relu(add(a, b)); broadcasting and
    scalars take the two ops."""
    from fastconv.functional.linear import add
    a = rng.standard_normal(shapes[0]).astype(dtype)
    b = rng.standard_normal(shapes[1]).astype(dtype)
    gy = rng.standard_normal(np.broadcast_shapes(a.shape, b.shape)).astype(dtype)
    runs = []
    for fn in (lambda x, y: A.relu(add(x, y)), A.add_relu):
        at, bt = fc.Tensor(a, requires_grad=True), fc.Tensor(b, requires_grad=True)
        y = fn(at, bt)
        y.backward(gy)
        runs.append((y.data, at.grad, bt.grad))
    for got, want in zip(*runs):
        np.testing.assert_array_equal(got, want)


def test_add_relu_gradcheck_and_shared_input(rng):
    """x + x through the fused op: the gradient accumulates from both operands."""
    x = fc.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    y = fc.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert fc.gradcheck(lambda p, q: A.add_relu(p, q), [x, y])
    A.add_relu(x, x).backward(np.ones((3, 4)))
    np.testing.assert_array_equal(x.grad, np.where(x.data > 0, 2.0, 0.0))
