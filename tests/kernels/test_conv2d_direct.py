"""conv2d_direct kernels against the NumPy reference: forward, backward_input and
backward_weight over a grid of dtype, stride, padding, dilation, groups and bias, plus edge
cases. Every output is pre-filled with NaN (the kernels must overwrite all of it), and every
pass is run with 1 and 2 threads, which must agree bit for bit."""
import itertools

import numpy as np
import pytest

from fctest import assert_close
from fastconv._ext import conv2d_direct as k
from fastconv.reference import (conv2d, conv2d_backward_input, conv2d_backward_weight,
                                conv_transpose2d)


def _pair(v):
    return (v, v) if np.ndim(v) == 0 else tuple(v)


def _out(h, kk, s, p, d):
    return (h + 2 * p - d * (kk - 1) - 1) // s + 1


def run_all(x, w, b, stride, padding, dilation, groups, out_hw=None, in_hw=None):
    """All three passes with n_threads 1 and 2; checks thread-independence, returns results."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    oh, ow = out_hw or (_out(h, kh, sh, ph, dh), _out(wd, kw, sw, pw, dw))
    dt = x.dtype
    gy = np.random.default_rng(7).standard_normal((n, c_out, oh, ow)).astype(dt)
    bias = b if b is not None else np.zeros(0, dt)
    geom = (sh, sw, ph, pw, dh, dw, groups)
    results = []
    for nt in (1, 2):
        y = np.full((n, c_out, oh, ow), np.nan, dt)
        k.forward(x, w, bias, y, *geom, nt)
        gx = np.full(x.shape, np.nan, dt)
        k.backward_input(gy, w, gx, *geom, nt)
        gw = np.full(w.shape, np.nan, dt)
        k.backward_weight(x, gy, gw, *geom, nt)
        results.append((y, gx, gw))
    for a, b2 in zip(*results):
        assert np.array_equal(a, b2), "result depends on n_threads"
    return gy, results[0]


def check(x, w, b, stride, padding, dilation, groups):
    gy, (y, gx, gw) = run_all(x, w, b, stride, padding, dilation, groups)
    assert_close(y, conv2d(x, w, b, stride, padding, dilation, groups), what="forward")
    assert_close(gx, conv2d_backward_input(gy, w, x.shape, stride, padding, dilation, groups),
                 what="backward_input")
    assert_close(gw, conv2d_backward_weight(x, gy, w.shape, stride, padding, dilation, groups),
                 what="backward_weight")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2, (2, 1)])
@pytest.mark.parametrize("padding", [0, 1, (2, 0)])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grid(dtype, stride, padding, dilation, groups, rng):
    c_in, c_out = 4, 6 if groups != 4 else 8
    x = rng.standard_normal((2, c_in, 9, 11)).astype(dtype)
    w = rng.standard_normal((c_out, c_in // groups, 3, 2)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    check(x, w, b, stride, padding, dilation, groups)
    # without bias (length-0 array): only the forward changes
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    ref = conv2d(x, w, None, stride, padding, dilation, groups)
    y = np.full(ref.shape, np.nan, dtype)
    k.forward(x, w, np.zeros(0, dtype), y, sh, sw, ph, pw, dh, dw, groups, 2)
    assert_close(y, ref, what="forward without bias")


EDGE = [  # (N, C_in, H, W, C_out, kh, kw, stride, padding, dilation, groups)
    (2, 3, 7, 6, 4, 1, 1, 1, 0, 1, 1),              # 1x1
    (2, 2, 5, 6, 3, 1, 1, 2, 1, 1, 1),              # 1x1, stride 2, padding
    (1, 2, 5, 4, 3, 7, 6, 1, 1, 1, 1),              # kernel as large as the padded input
    (2, 1, 3, 3, 2, 5, 5, 3, 1, 1, 1),              # kernel larger than the input
    (1, 1, 8, 9, 1, 3, 3, 1, 1, 1, 1),              # N = 1, C = 1
    (3, 1, 12, 12, 6, 5, 5, 1, 2, 1, 1),            # lenet c1
    (2, 3, 23, 21, 4, 7, 7, 2, 3, 1, 1),            # resnet stem
    (2, 3, 10, 11, 6, 3, 3, 3, 0, 1, 3),            # rows/cols no window reads
    (1, 4, 9, 10, 4, 3, 3, (1, 3), (0, 2), (3, 1), 2),
    (1, 2, 17, 40, 3, 3, 4, (2, 3), (1, 2), (1, 2), 1),   # long rows: vector body + tail
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", EDGE)
def test_edge_cases(case, dtype, rng):
    n, c_in, h, wd, c_out, kh, kw, s, p, d, g = case
    x = rng.standard_normal((n, c_in, h, wd)).astype(dtype)
    w = rng.standard_normal((c_out, c_in // g, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    check(x, w, b, s, p, d, g)


@pytest.mark.parametrize("extra", [(1, 0), (0, 1), (1, 1)])
def test_grad_in_larger_than_any_window(extra, rng):
    """grad_in's H, W come from the caller (transposed conv's output_padding): rows and columns
    no window reads must be exactly 0. Oracle: the transposed conv with that output_padding."""
    x = rng.standard_normal((2, 2, 7 + extra[0], 7 + extra[1]))
    w = rng.standard_normal((3, 2, 3, 3))
    gy = rng.standard_normal((2, 3, 3, 3))          # the output size of a 7x7 input, stride 2
    gx = np.full(x.shape, np.nan)
    k.backward_input(gy, w, gx, 2, 2, 0, 0, 1, 1, 1, 2)
    assert_close(gx, conv_transpose2d(gy, w, None, 2, 0, extra, 1, 1))
    assert np.all(gx[:, :, 7:, :] == 0) and np.all(gx[:, :, :, 7:] == 0)
    gw = np.full(w.shape, np.nan)
    k.backward_weight(x, gy, gw, 2, 2, 0, 0, 1, 1, 1, 2)
    assert_close(gw, conv2d_backward_weight(x[:, :, :7, :7], gy, w.shape, 2, 0, 1, 1))


def test_thread_count_does_not_change_results(rng):
    """More planes and pairs than threads, float32 (where summation order shows most)."""
    x = rng.standard_normal((5, 3, 30, 33)).astype(np.float32)
    w = rng.standard_normal((7, 3, 5, 5)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    for s, p in itertools.product([1, 2], [0, 2]):
        run_all(x, w, b, s, p, 1, 1)


def test_empty_batch():
    x = np.zeros((0, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    y = np.zeros((0, 3, 3, 3), np.float32)
    k.forward(x, w, np.zeros(0, np.float32), y, 1, 1, 0, 0, 1, 1, 1, 2)
    k.backward_input(y, w, x, 1, 1, 0, 0, 1, 1, 1, 2)
    gw = np.full(w.shape, np.nan, np.float32)
    k.backward_weight(x, y, gw, 1, 1, 0, 0, 1, 1, 1, 2)
    assert np.all(gw == 0)
