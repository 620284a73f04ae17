"""F.conv2d / F.conv_transpose2d / F.depthwise_separable_conv2d through the autograd tape:
every algorithm against the NumPy reference and against every other, forward and gradients,
float64 finite differences, thread-count invariance, odd layouts, N = 0, NaN/Inf."""
import itertools

import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F
from fctest import assert_close
from fastconv import reference as ref
from fastconv.functional._dispatch import SPECIALISED, ConvParams

DTYPES = [np.float32, np.float64]

# (N, C_in, H, W, C_out, (kh, kw), stride, padding, dilation, groups)
CONV_CASES = [
    (2, 3, 9, 8, 4, (3, 3), 1, 1, 1, 1),
    (2, 4, 10, 7, 6, (3, 2), (2, 1), (1, 0), 1, 2),
    (1, 4, 11, 11, 4, (3, 3), 2, 2, 2, 4),          # depthwise, dilated
    (2, 3, 8, 8, 6, (3, 3), 1, 1, 1, 3),            # depthwise, multiplier 2
    (2, 6, 7, 9, 8, (1, 1), 1, 0, 1, 1),            # pointwise
    (1, 5, 9, 9, 3, (1, 1), 2, 0, 1, 1),            # strided 1x1
    (1, 2, 5, 5, 3, (5, 5), 1, 0, 1, 1),            # kernel as large as the input
    (2, 2, 3, 4, 2, (5, 4), 1, 1, 1, 1),            # kernel as large as the padded input
    (1, 1, 6, 6, 1, (2, 2), 3, 1, 2, 1),            # C = 1, stride > kernel
    (3, 8, 6, 5, 8, (3, 3), 1, (0, 2), (2, 1), 2),
]


def _make(case, dtype, rng, bias=True):
    n, c_in, h, w, c_out, (kh, kw), s, p, d, g = case
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = rng.standard_normal((c_out, c_in // g, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype) if bias else None
    return x, wt, b


def _params(case):
    n, c_in, h, w, c_out, (kh, kw), s, p, d, g = case
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    return ConvParams(n, c_in, h, w, c_out, kh, kw, pair(s), pair(p), pair(d), g)


def _algorithms(params):
    return [a for a in fc.conv_algorithms()
            if a not in SPECIALISED or SPECIALISED[a](params)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_every_algorithm_matches_reference(case, dtype, bias, rng):
    x, wt, b = _make(case, dtype, rng, bias)
    s, p, d, g = case[6:]
    y_ref = ref.conv2d(x, wt, b, s, p, d, g)
    gy = rng.standard_normal(y_ref.shape).astype(dtype)
    gx_ref = ref.conv2d_backward_input(gy, wt, x.shape, s, p, d, g)
    gw_ref = ref.conv2d_backward_weight(x, gy, wt.shape, s, p, d, g)
    results = {}
    for algorithm in [None] + _algorithms(_params(case)):
        xt, wtt = fc.Tensor(x, requires_grad=True), fc.Tensor(wt, requires_grad=True)
        bt = fc.Tensor(b, requires_grad=True) if bias else None
        y = F.conv2d(xt, wtt, bt, s, p, d, g, algorithm=algorithm)
        assert y.dtype == dtype
        y.backward(gy)
        what = f"{algorithm} {case}"
        assert_close(y.data, y_ref, dtype, what=f"forward {what}")
        assert_close(xt.grad, gx_ref, dtype, what=f"grad input {what}")
        assert_close(wtt.grad, gw_ref, dtype, what=f"grad weight {what}")
        if bias:
            assert_close(bt.grad, gy.sum(axis=(0, 2, 3)), dtype, what=f"grad bias {what}")
        results[algorithm] = (y.data, xt.grad, wtt.grad)
    # every algorithm against every other, on the same inputs
    for a1, a2 in itertools.combinations(results, 2):
        for r1, r2 in zip(results[a1], results[a2]):
            assert_close(r1, r2, dtype, what=f"{a1} vs {a2}")


# (N, C_in, H, W, C_out, (kh, kw), stride, padding, output_padding, dilation, groups)
TRANSPOSED_CASES = [
    (2, 4, 5, 5, 3, (4, 4), 2, 1, 0, 1, 1),          # the bench's upsampling layer, small
    (1, 4, 4, 6, 6, (3, 3), 2, 1, 1, 1, 2),
    (2, 3, 5, 4, 2, (3, 2), (3, 2), (0, 1), (2, 1), (1, 2), 1),
    (1, 4, 6, 6, 4, (3, 3), 1, 1, 0, 2, 4),          # depthwise transposed
    (2, 5, 4, 4, 7, (1, 1), 1, 0, 0, 1, 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TRANSPOSED_CASES)
def test_conv_transpose2d_matches_reference(case, dtype, rng):
    n, c_in, h, w, c_out, (kh, kw), s, p, op, d, g = case
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = rng.standard_normal((c_in, c_out // g, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    y_ref = ref.conv_transpose2d(x, wt, b, s, p, op, g, d)
    gy = rng.standard_normal(y_ref.shape).astype(dtype)
    gx_ref = ref.conv_transpose2d_backward_input(gy, wt, x.shape, s, p, op, g, d)
    gw_ref = ref.conv_transpose2d_backward_weight(x, gy, wt.shape, s, p, op, g, d)
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    params = ConvParams(n, c_out, *y_ref.shape[2:], c_in, kh, kw, pair(s), pair(p), pair(d), g)
    for algorithm in [None] + _algorithms(params):
        xt, wtt = fc.Tensor(x, requires_grad=True), fc.Tensor(wt, requires_grad=True)
        bt = fc.Tensor(b, requires_grad=True)
        y = F.conv_transpose2d(xt, wtt, bt, s, p, op, g, d, algorithm=algorithm)
        y.backward(gy)
        what = f"{algorithm} {case}"
        assert_close(y.data, y_ref, dtype, what=f"forward {what}")
        assert_close(xt.grad, gx_ref, dtype, what=f"grad input {what}")
        assert_close(wtt.grad, gw_ref, dtype, what=f"grad weight {what}")
        assert_close(bt.grad, gy.sum(axis=(0, 2, 3)), dtype, what=f"grad bias {what}")


@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[2], CONV_CASES[9]])
def test_conv2d_gradcheck_float64(case, rng):
    x, wt, b = _make(case, np.float64, rng)
    s, p, d, g = case[6:]
    inputs = [fc.Tensor(a, requires_grad=True) for a in (x, wt, b)]
    for algorithm in _algorithms(_params(case)):
        assert fc.gradcheck(lambda x_, w_, b_: F.conv2d(x_, w_, b_, s, p, d, g,
                                                        algorithm=algorithm), inputs)


@pytest.mark.parametrize("case", TRANSPOSED_CASES[:3])
def test_conv_transpose2d_gradcheck_float64(case, rng):
    n, c_in, h, w, c_out, (kh, kw), s, p, op, d, g = case
    x = rng.standard_normal((n, c_in, h, w))
    wt = rng.standard_normal((c_in, c_out // g, kh, kw))
    inputs = [fc.Tensor(a, requires_grad=True) for a in (x, wt, rng.standard_normal(c_out))]
    assert fc.gradcheck(lambda x_, w_, b_: F.conv_transpose2d(x_, w_, b_, s, p, op, g, d),
                        inputs)


def test_depthwise_separable_matches_composition(rng):
    x = rng.standard_normal((2, 4, 9, 9))
    dw = rng.standard_normal((8, 1, 3, 3))
    pw = rng.standard_normal((5, 8, 1, 1))
    bd, bp = rng.standard_normal(8), rng.standard_normal(5)
    y = F.depthwise_separable_conv2d(x, dw, pw, bd, bp, stride=2, padding=1, dilation=1)
    mid = ref.conv2d(x, dw, bd, 2, 1, 1, groups=4)
    assert_close(y.data, ref.conv2d(mid, pw, bp), np.float64)
    inputs = [fc.Tensor(a, requires_grad=True) for a in (x, dw, pw, bd, bp)]
    assert fc.gradcheck(lambda *a: F.depthwise_separable_conv2d(*a, stride=2, padding=1),
                        inputs)


@pytest.mark.parametrize("case", CONV_CASES)
def test_results_identical_for_1_and_2_threads(case, rng):
    x, wt, b = _make(case, np.float32, rng)
    s, p, d, g = case[6:]
    gy = None
    out = {}
    before = fc.get_num_threads()
    try:
        for threads in (1, 2, 3):
            fc.set_num_threads(threads)
            for algorithm in _algorithms(_params(case)):
                xt, wtt = fc.Tensor(x, requires_grad=True), fc.Tensor(wt, requires_grad=True)
                y = F.conv2d(xt, wtt, b, s, p, d, g, algorithm=algorithm)
                if gy is None:
                    gy = rng.standard_normal(y.shape).astype(np.float32)
                y.backward(gy)
                got = (y.data, xt.grad, wtt.grad)
                if algorithm in out:
                    for a, b_ in zip(out[algorithm], got):
                        assert np.array_equal(a, b_), f"{algorithm}: {threads} threads differ"
                else:
                    out[algorithm] = got
    finally:
        fc.set_num_threads(before)


def test_batch_larger_than_threads_and_smaller_give_same_result(rng):
    """im2col runs images in parallel when N >= threads and parallel GEMMs otherwise."""
    x = rng.standard_normal((3, 8, 12, 12)).astype(np.float32)
    wt = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    before = fc.get_num_threads()
    try:
        fc.set_num_threads(2)
        y_batch = F.conv2d(x, wt, padding=1, algorithm="im2col").data
        y_single = np.concatenate([F.conv2d(x[i:i + 1], wt, padding=1,
                                            algorithm="im2col").data for i in range(3)])
    finally:
        fc.set_num_threads(before)
    assert np.array_equal(y_batch, y_single)


@pytest.mark.parametrize("layout", ["fortran", "strided", "readonly", "broadcast", "negative"])
def test_odd_layouts_give_same_result(layout, rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    wt = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    expected = F.conv2d(x, wt, padding=1).data
    if layout == "fortran":
        x2, w2 = np.asfortranarray(x), np.asfortranarray(wt)
    elif layout == "strided":
        big = np.zeros((2, 6, 8, 16), np.float32)
        big[:, ::2, :, ::2] = x
        x2, w2 = big[:, ::2, :, ::2], wt
    elif layout == "readonly":
        x2, w2 = x.copy(), wt.copy()
        x2.flags.writeable = w2.flags.writeable = False
    elif layout == "broadcast":
        x2 = np.broadcast_to(x[:1], x.shape)
        expected = F.conv2d(np.ascontiguousarray(x2), wt, padding=1).data
        w2 = wt
    else:
        x2, w2 = x[:, :, ::-1, ::-1].copy()[:, :, ::-1, ::-1], wt
    assert np.array_equal(F.conv2d(x2, w2, padding=1).data, expected)


def test_empty_batch(rng):
    wt = fc.Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    x = fc.Tensor(np.zeros((0, 3, 8, 8)), requires_grad=True)
    for algorithm in ("direct", "im2col"):
        y = F.conv2d(x, wt, padding=1, algorithm=algorithm)
        assert y.shape == (0, 4, 8, 8)
        y.sum().backward()
        assert x.grad.shape == (0, 3, 8, 8)
        assert np.array_equal(wt.grad, np.zeros((4, 3, 3, 3)))
        wt.grad = None
    y = F.conv_transpose2d(np.zeros((0, 4, 5, 5)), np.ones((4, 2, 3, 3)), stride=2)
    assert y.shape == (0, 2, 11, 11)


def test_unbatched_input(rng):
    x = rng.standard_normal((3, 7, 7))
    wt = rng.standard_normal((2, 3, 3, 3))
    y = F.conv2d(x, wt, padding=1)
    assert y.shape == (2, 7, 7)
    assert_close(y.data, ref.conv2d(x[None], wt, None, 1, 1)[0], np.float64)


@pytest.mark.parametrize("kernel", [(3, 3), (4, 2), (2, 5)])
def test_padding_same_and_valid(kernel, rng):
    x = rng.standard_normal((1, 2, 7, 8))
    wt = rng.standard_normal((3, 2) + kernel)
    y = F.conv2d(x, wt, padding="same", dilation=(1, 2))
    assert y.shape == (1, 3, 7, 8)
    # PyTorch's "same": total padding d*(k-1); the odd pixel goes to the bottom/right.
    tot = [(k - 1) * d for k, d in zip(kernel, (1, 2))]
    xp = np.pad(x, ((0, 0), (0, 0), (tot[0] // 2, tot[0] - tot[0] // 2),
                    (tot[1] // 2, tot[1] - tot[1] // 2)))
    assert_close(y.data, ref.conv2d(xp, wt, None, 1, 0, (1, 2)), np.float64)
    assert_close(F.conv2d(x, wt, padding="valid").data, ref.conv2d(x, wt), np.float64)


def test_nan_and_inf_propagate():
    x = np.ones((1, 2, 5, 5))
    x[0, 0, 2, 2] = np.nan
    x[0, 1, 0, 0] = np.inf
    wt = np.ones((3, 2, 3, 3))
    for algorithm in ("direct", "im2col"):
        y = F.conv2d(x, wt, padding=1, algorithm=algorithm).data
        assert np.isnan(y[0, :, 1:4, 1:4]).all()
        assert np.isposinf(y[0, :, 0, 0]).all()
        assert np.isfinite(y[0, :, 4, 4]).all()
