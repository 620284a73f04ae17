"""F.batch_norm through the autograd tape: reference, float64 gradcheck (training w.r.t.
input/weight/bias, and eval), running-stat update, ranks 2-4, odd layouts, validation."""
import numpy as np
import pytest

import fastconv as fc
from fctest import assert_close
from fastconv.functional.normalization import batch_norm
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
