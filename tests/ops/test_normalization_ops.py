"""F.batch_norm through the autograd tape: reference, float64 gradcheck (training w.r.t.
input/weight/bias, and eval), running-stat update, ranks 2-4, odd layouts, validation."""
import numpy as np
import pytest

import fastconv as fc
from fctest import assert_close
from fastconv.functional.normalization import batch_norm, batch_norm_relu
from fastconv.reference import batchnorm as ref

DTYPES = [np.float32, np.float64]
SHAPES = [(4, 3, 5, 6), (1, 2, 3, 3), (6, 5), (5, 4, 7), (3, 1, 2, 2), (20, 70)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_training_forward_backward_and_running_stats(shape, dtype, rng):
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    xt, wt, bt = (fc.Tensor(a, requires_grad=True) for a in (x, w, b))
    y = batch_norm(xt, rm, rv, wt, bt, training=True, momentum=0.2)
    y.backward(gy)
    ref.update_running_stats(x, rm_ref, rv_ref, 0.2)
    assert y.dtype == dtype and y.shape == shape
    assert_close(y.data, ref.batch_norm_train(x, w, b)[0], dtype, what="forward")
    assert_close(rm, rm_ref, dtype, what="running_mean")
    assert_close(rv, rv_ref, dtype, what="running_var")
    gx, gw, gb = ref.batch_norm_backward(gy, x, w)
    assert_close(xt.grad, gx, dtype, what="grad input")
    assert_close(wt.grad, gw, dtype, what="grad weight")
    assert_close(bt.grad, gb, dtype, what="grad bias")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES[:4])
def test_eval_forward_backward(shape, dtype, rng):
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    gy = rng.standard_normal(shape).astype(dtype)
    xt, wt, bt = (fc.Tensor(a, requires_grad=True) for a in (x, w, b))
    y = batch_norm(xt, rm, rv, wt, bt, training=False)
    y.backward(gy)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    assert_close(y.data, ref.batch_norm_eval(x, rm, rv, w, b), dtype)
    gx, gw, gb = ref.batch_norm_eval_backward(gy, x, rm, rv, w)
    assert_close(xt.grad, gx, dtype, what="grad input")
    assert_close(wt.grad, gw, dtype, what="grad weight")
    assert_close(bt.grad, gb, dtype, what="grad bias")


@pytest.mark.parametrize("shape", [(3, 2, 3, 2), (4, 3), (2, 2, 3), (1, 2, 2, 3)])
def test_gradcheck_training(shape, rng):
    c = shape[1]
    x = fc.Tensor(rng.standard_normal(shape), requires_grad=True)
    w = fc.Tensor(rng.standard_normal(c), requires_grad=True)
    b = fc.Tensor(rng.standard_normal(c), requires_grad=True)
    assert fc.gradcheck(lambda x, w, b: batch_norm(x, None, None, w, b, training=True),
                        [x, w, b])
    assert fc.gradcheck(lambda x: batch_norm(x, None, None, training=True), [x])


def test_gradcheck_eval(rng):
    x = fc.Tensor(rng.standard_normal((3, 2, 3, 2)), requires_grad=True)
    w = fc.Tensor(rng.standard_normal(2), requires_grad=True)
    b = fc.Tensor(rng.standard_normal(2), requires_grad=True)
    rm, rv = rng.standard_normal(2), rng.random(2) + 0.5
    assert fc.gradcheck(lambda x, w, b: batch_norm(x, rm, rv, w, b), [x, w, b])


def test_odd_layouts_match_contiguous(rng):
    x = rng.standard_normal((5, 4, 3, 6)).astype(np.float32)
    w = rng.standard_normal(4).astype(np.float32)
    expect = batch_norm(x, None, None, w, training=True).data
    f_order = np.asfortranarray(x)
    ro = x.copy()
    ro.flags.writeable = False
    strided = np.repeat(x, 2, axis=3)[..., ::2]
    for variant in (f_order, ro, strided):
        np.testing.assert_array_equal(batch_norm(variant, None, None, w, training=True).data,
                                      expect)
    # non-contiguous running stats are updated in place too
    rm_base = np.zeros(8, np.float32)
    rm = rm_base[::2]
    batch_norm(x, rm, None, training=True)
    assert_close(rm, 0.1 * x.mean(axis=(0, 2, 3)), np.float32)
    assert (rm_base[1::2] == 0).all()


def test_large_mean_float32(rng):
    x = (rng.standard_normal((16, 3, 8, 8)) + 1e4).astype(np.float32)
    rv = np.zeros(3, np.float32)
    batch_norm(x, None, rv, training=True, momentum=1.0)
    var = x.astype(np.float64).var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(rv, var, rtol=1e-5)


def test_thread_count_invariance(rng):
    x = rng.standard_normal((8, 3, 20, 20)).astype(np.float32)
    out = []
    try:
        for n in (1, 2, 4):
            fc.set_num_threads(n)
            xt = fc.Tensor(x, requires_grad=True)
            y = batch_norm(xt, None, None, training=True)
            (y * y).sum().backward()
            out.append((y.data, xt.grad))
    finally:
        fc.set_num_threads(2)
    for y, g in out[1:]:
        np.testing.assert_array_equal(y, out[0][0])
        np.testing.assert_array_equal(g, out[0][1])


def test_validation():
    x = np.ones((2, 3, 4, 4), np.float32)
    f32, f64 = np.ones(3, np.float32), np.ones(3, np.float64)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        batch_norm(np.ones((1, 3), np.float32), None, None, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        batch_norm(np.ones((1, 3, 1, 1), np.float32), None, None, training=True)
    batch_norm(np.ones((1, 3), np.float32), f32, f32.copy(), training=False)   # eval: fine
    with pytest.raises(TypeError, match="int64"):
        batch_norm(np.ones((2, 3), np.int64), None, None, training=True)
    with pytest.raises(TypeError, match="share one dtype"):
        batch_norm(x, f64, f64.copy(), training=True)
    with pytest.raises(TypeError, match="share one dtype"):
        batch_norm(x, None, None, weight=f64, training=True)
    with pytest.raises(ValueError, match=r"expected weight of shape \(3,\)"):
        batch_norm(x, None, None, weight=np.ones(4, np.float32), training=True)
    with pytest.raises(ValueError, match=r"expected running_var of shape \(3,\)"):
        batch_norm(x, f32, np.ones((3, 1), np.float32))
    with pytest.raises(ValueError, match="2-D, 3-D or 4-D"):
        batch_norm(np.ones(3, np.float32), None, None, training=True)
    with pytest.raises(ValueError, match="eval mode"):
        batch_norm(x, None, None, training=False)
    ro = f32.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        batch_norm(x, ro, None, training=True)


# ----------------------------------------------------------------- batch_norm_relu (fused)

def _bn_then_relu(training, x, rm, rv, w, b):
    return fc.functional.relu(batch_norm(x, rm, rv, w, b, training=training, momentum=0.2))


def _fused(training, x, rm, rv, w, b):
    return batch_norm_relu(x, rm, rv, w, b, training=training, momentum=0.2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (8, 3, 4, 4), (6, 5), (5, 4, 7), (2, 9, 20, 20),
                                   (3, 1, 2, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_is_bit_identical_to_batch_norm_then_relu(shape, dtype, training,
                                                                   rng):
    """Values, the three gradients and the running statistics, for planes that are
    regrouped (4x4), short, long, 2-D and 3-D inputs, with and without weight and bias."""
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 0] = 0                                 # a constant: normalises to the bias exactly
    gy = rng.standard_normal(shape).astype(dtype)
    for affine in (True, False):
        grads, outs = [], []
        for fn in (_bn_then_relu, _fused):
            rm, rv = np.full(c, 0.5, dtype), np.full(c, 2.0, dtype)
            w = fc.Tensor(rng.standard_normal(c).astype(dtype), requires_grad=True) \
                if affine else None
            b = fc.Tensor(np.linspace(-1, 1, c).astype(dtype), requires_grad=True) \
                if affine else None
            if affine:                          # the same parameters for both
                w.data[...] = np.arange(1, c + 1) / c - 0.3
            xt = fc.Tensor(x, requires_grad=True)
            y = fn(training, xt, rm, rv, w, b)
            y.backward(gy)
            outs.append((y.data, rm, rv))
            grads.append([xt.grad] + ([w.grad, b.grad] if affine else []))
        for a, e in zip(outs[1], outs[0]):
            np.testing.assert_array_equal(a, e)
        for a, e in zip(grads[1], grads[0]):
            np.testing.assert_array_equal(a, e)
        assert (outs[1][0] >= 0).all()


def test_batch_norm_relu_gradcheck(rng):
    x, w, b = (fc.Tensor(a, requires_grad=True) for a in
               (rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(3),
                rng.standard_normal(3) * 0.1))
    assert fc.gradcheck(lambda x, w, b: batch_norm_relu(x, None, None, w, b, training=True),
                        [x, w, b])
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    assert fc.gradcheck(lambda x, w, b: batch_norm_relu(x, rm, rv, w, b), [x, w, b])


def test_batch_norm_relu_validates_as_batch_norm(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="batch_norm_relu: expected weight of shape"):
        batch_norm_relu(x, None, None, np.ones(4, np.float32), training=True)
    with pytest.raises(ValueError, match="batch_norm_relu: expected running_mean and"):
        batch_norm_relu(x, None, None)
    with pytest.raises(TypeError):
        batch_norm_relu(x, None, None, np.ones(3, np.float64), training=True)
