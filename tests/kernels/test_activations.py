"""fastconv._ext.activations against the NumPy reference: every forward and backward pass,
odd sizes (not multiples of the parallel block), empty buffers, NaN, thread-count
bit-identity, PReLU per-channel and shared weights."""
import numpy as np
import pytest

from fctest import assert_close
from fastconv._ext import activations as k
from fastconv.reference import activations as ref

DTYPES = [np.float32, np.float64]
SIZES = [0, 1, 7, 16384, 40001]      # block is 16384 elements: below, at, across blocks


def _run(name, *arrays, args=(), n_threads=2):
    out = np.full_like(arrays[0], np.nan)
    getattr(k, name)(*arrays, *args, out, n_threads)
    return out


def _expm1_neg(x):
    return np.expm1(np.minimum(x, 0))


def _exp_neg_abs(x):
    return np.exp(-np.abs(x))


def _data(n, dtype, rng):
    x = rng.standard_normal(n).astype(dtype) * 3
    if n > 3:
        x[:3] = [0, -0.0, 1e-30]            # the branch points
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_forward_passes(n, dtype, rng):
    x = _data(n, dtype, rng)
    assert_close(_run("relu_forward", x), ref.relu(x), dtype, what="relu")
    assert_close(_run("leaky_relu_forward", x, args=(0.2,)), ref.leaky_relu(x, 0.2), dtype,
                 what="leaky_relu")
    assert_close(_run("elu_forward", x, _expm1_neg(x), args=(1.3,)), ref.elu(x, 1.3), dtype,
                 what="elu")
    assert_close(_run("sigmoid_forward", x, _exp_neg_abs(x)), ref.sigmoid(x), dtype,
                 what="sigmoid")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_backward_passes(n, dtype, rng):
    x = _data(n, dtype, rng)
    gy = rng.standard_normal(n).astype(dtype)
    y = ref.relu(x)
    assert_close(_run("relu_backward", gy, y), ref.relu_backward(gy, x), dtype, what="relu")
    for slope in (0.2, -0.5):
        t = ref.leaky_relu(x, slope) if slope >= 0 else x
        assert_close(_run("leaky_relu_backward", gy, t, args=(slope,)),
                     ref.leaky_relu_backward(gy, x, slope), dtype, what=f"leaky {slope}")
    assert_close(_run("elu_backward", gy, ref.elu(x, 1.3), args=(1.3, True)),
                 ref.elu_backward(gy, x, 1.3), dtype, what="elu from output")
    assert_close(_run("elu_backward", gy, x, args=(-0.7, False)),
                 ref.elu_backward(gy, x, -0.7), dtype, what="elu from input")
    s = ref.sigmoid(x)
    assert_close(_run("sigmoid_backward", gy, s), ref.sigmoid_backward(gy, s), dtype,
                 what="sigmoid")
    t = np.tanh(x)
    assert_close(_run("tanh_backward", gy, t), ref.tanh_backward(gy, t), dtype, what="tanh")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_extremes(dtype):
    x = np.array([-1000, -80, -20, 0, 20, 80, 1000], dtype)
    y = _run("sigmoid_forward", x, _exp_neg_abs(x))
    assert np.isfinite(y).all() and y[0] == 0 and y[-1] == 1
    np.testing.assert_allclose(y[2], 1 / (1 + np.exp(20.0)), rtol=1e-6)   # relative, tiny y


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates(dtype):
    x = np.array([np.nan, -1, 1], dtype)
    for name, extra, args in [("relu_forward", (), ()), ("leaky_relu_forward", (), (0.1,)),
                              ("elu_forward", (_expm1_neg(x),), (1.0,)),
                              ("sigmoid_forward", (_exp_neg_abs(x),), ())]:
        y = _run(name, x, *extra, args=args)
        assert np.isnan(y[0]) and np.isfinite(y[1:]).all(), name
    gy = np.array([1, 1, np.nan], dtype)
    gx = _run("relu_backward", gy, np.array([1, 0, 2], dtype))
    assert gx[0] == 1 and gx[1] == 0 and np.isnan(gx[2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 1, 7, 3), (5, 4), (3, 2, 9)])
@pytest.mark.parametrize("shared", [False, True])
def test_prelu(shape, dtype, shared, rng):
    x = _data(int(np.prod(shape)), dtype, rng).reshape(shape)
    gy = rng.standard_normal(shape).astype(dtype)
    w = rng.random(1 if shared else shape[1]).astype(dtype)
    x3 = x.reshape(shape[0], shape[1], -1)
    y = np.full_like(x3, np.nan)
    k.prelu_forward(x3, w, y, 2)
    assert_close(y.reshape(shape), ref.prelu(x, w), dtype)
    gx, planes = np.full_like(x3, np.nan), np.full(shape[:2], np.nan)
    k.prelu_backward(gy.reshape(x3.shape), x3, w, gx, planes, 2)
    gx_ref, gw_ref = ref.prelu_backward(gy, x, w)
    assert_close(gx.reshape(shape), gx_ref, dtype, what="grad input")
    gw = planes.sum(axis=0)
    gw = np.array([gw.sum()]) if shared else gw
    assert_close(gw, gw_ref, dtype, what="grad weight")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bit_identical_for_any_thread_count(dtype, rng):
    x = rng.standard_normal(70001).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    x3, gy3 = x[:70000].reshape(10, 7, 1000), gy[:70000].reshape(10, 7, 1000)
    w = rng.random(7).astype(dtype)
    runs = []
    for n_threads in (1, 2, 3, 8):
        outs = [_run("relu_forward", x, n_threads=n_threads),
                _run("elu_forward", x, _expm1_neg(x), args=(1.0,), n_threads=n_threads),
                _run("sigmoid_forward", x, _exp_neg_abs(x), n_threads=n_threads),
                _run("tanh_backward", gy, x, n_threads=n_threads)]
        y, gx, planes = np.empty_like(x3), np.empty_like(x3), np.empty((10, 7))
        k.prelu_forward(x3, w, y, n_threads)
        k.prelu_backward(gy3, x3, w, gx, planes, n_threads)
        runs.append(outs + [y, gx, planes])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 16383, 16384, 50001])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_add_forward_is_numpys_add(dtype, n, threads):
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    a[: n // 3] = np.inf
    out = np.full(n, 7, dtype)
    k.add_forward(a, b, out, threads)
    np.testing.assert_array_equal(out, a + b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 16383, 50001])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_add_relu_forward_is_relu_of_add(dtype, n, threads):
    """relu_forward(add_forward(a, b)) bit for bit: NaN and -0.0 kept, -inf + x clipped."""
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    a[: n // 4] = -np.inf
    a[n // 4: n // 3] = np.nan
    a[n // 3: n // 2], b[n // 3: n // 2] = -0.0, -0.0
    s, want, out = np.empty(n, dtype), np.empty(n, dtype), np.full(n, 7, dtype)
    k.add_forward(a, b, s, threads)
    k.relu_forward(s, want, threads)
    k.add_relu_forward(a, b, out, threads)
    np.testing.assert_array_equal(out.view(np.uint8), want.view(np.uint8))


def test_add_arrays_falls_back_to_numpy_semantics():
    from fastconv.autograd import add_arrays
    big = np.ones((70000,), np.float32)
    assert add_arrays(big, big).dtype == np.float32
    np.testing.assert_array_equal(add_arrays(big, big), big + big)
    np.testing.assert_array_equal(add_arrays(big, np.float64(2.0) * big), big + 2.0 * big)
    col = np.arange(3.0).reshape(3, 1)
    np.testing.assert_array_equal(add_arrays(col, np.ones((3, 4))), col + np.ones((3, 4)))
    strided = np.ones((70000 * 2,), np.float32)[::2]
    np.testing.assert_array_equal(add_arrays(strided, big), strided + big)
