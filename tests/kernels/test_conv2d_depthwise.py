"""conv2d_depthwise kernels (groups == C_in, channel multiplier m = C_out // C_in) against the
NumPy reference and against conv2d_direct, over a grid of dtype, stride, padding, dilation,
multiplier, bias and kernel size (3x3 takes the specialised paths, 3x2 and 5x5 the generic
ones), plus edge cases. Outputs are pre-filled with NaN (they must be fully overwritten), and
every pass runs with 1 and 2 threads, which must agree bit for bit; the fused ``backward``
(both gradients in one pass) must give the bits of ``backward_input`` and
``backward_weight``. The inner loops have
AVX-512, AVX2 and portable versions chosen at run time: the whole module is rerun in a
subprocess with FASTCONV_SIMD_TARGET forcing each lower path."""

import numpy as np
import pytest

from fctest import assert_close, run_on_simd_target
from fastconv._ext import conv2d_depthwise as k
from fastconv._ext import conv2d_direct
from fastconv.reference import (conv2d, conv2d_backward_input, conv2d_backward_weight,
                                conv_transpose2d)


def _pair(v):
    return (v, v) if np.ndim(v) == 0 else tuple(v)


def _out(h, kk, s, p, d):
    return (h + 2 * p - d * (kk - 1) - 1) // s + 1


def _passes(mod, x, w, bias, gy, geom, nt):
    y = np.full(gy.shape, np.nan, x.dtype)
    mod.forward(x, w, bias, y, *geom, nt)
    gx = np.full(x.shape, np.nan, x.dtype)
    mod.backward_input(gy, w, gx, *geom, nt)
    gw = np.full(w.shape, np.nan, x.dtype)
    mod.backward_weight(x, gy, gw, *geom, nt)
    if hasattr(mod, "backward"):   # both gradients in one pass: the same bits
        gx2, gw2 = np.full(x.shape, np.nan, x.dtype), np.full(w.shape, np.nan, x.dtype)
        mod.backward(x, gy, w, gx2, gw2, *geom, nt)
        assert np.array_equal(gx2, gx), "backward's grad_in differs from backward_input's"
        assert np.array_equal(gw2, gw), "backward's grad_weight differs from backward_weight's"
    return y, gx, gw


def check(x, w, b, stride, padding, dilation):
    """All passes, 1 and 2 threads, against the reference and conv2d_direct."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    oh, ow = _out(h, kh, sh, ph, dh), _out(wd, kw, sw, pw, dw)
    gy = np.random.default_rng(7).standard_normal((n, c_out, oh, ow)).astype(x.dtype)
    bias = b if b is not None else np.zeros(0, x.dtype)
    geom = (sh, sw, ph, pw, dh, dw, c)
    one = _passes(k, x, w, bias, gy, geom, 1)
    two = _passes(k, x, w, bias, gy, geom, 2)
    for a, a2 in zip(one, two):
        assert np.array_equal(a, a2), "result depends on n_threads"
    y, gx, gw = one
    assert_close(y, conv2d(x, w, b, stride, padding, dilation, c), what="forward")
    assert_close(gx, conv2d_backward_input(gy, w, x.shape, stride, padding, dilation, c),
                 what="backward_input")
    assert_close(gw, conv2d_backward_weight(x, gy, w.shape, stride, padding, dilation, c),
                 what="backward_weight")
    for name, a, d in zip(("forward", "backward_input", "backward_weight"), one,
                          _passes(conv2d_direct, x, w, bias, gy, geom, 2)):
        assert_close(a, d, what=name + " vs conv2d_direct")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2, (2, 1)])
@pytest.mark.parametrize("padding", [0, 1, (2, 0)])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("ksize", [(3, 3), (3, 2)])
def test_grid(dtype, stride, padding, dilation, multiplier, ksize, rng):
    c = 3
    x = rng.standard_normal((2, c, 9, 13)).astype(dtype)
    w = rng.standard_normal((c * multiplier, 1) + ksize).astype(dtype)
    b = rng.standard_normal(c * multiplier).astype(dtype)
    check(x, w, b, stride, padding, dilation)
    # without bias (length-0 array): only the forward changes
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    ref = conv2d(x, w, None, stride, padding, dilation, c)
    y = np.full(ref.shape, np.nan, dtype)
    k.forward(x, w, np.zeros(0, dtype), y, sh, sw, ph, pw, dh, dw, c, 2)
    assert_close(y, ref, what="forward without bias")


EDGE = [  # (N, C, H, W, multiplier, kh, kw, stride, padding, dilation)
    (2, 3, 7, 6, 1, 1, 1, 1, 0, 1),                 # 1x1
    (2, 2, 5, 6, 2, 1, 1, 2, 1, 1),                 # 1x1, stride 2, padding
    (1, 2, 5, 4, 1, 7, 6, 1, 1, 1),                 # kernel as large as the padded input
    (1, 2, 1, 1, 2, 3, 3, 1, 1, 1),                 # 3x3 over a 1x1 image: no interior
    (1, 1, 8, 9, 1, 3, 3, 1, 1, 1),                 # N = 1, C = 1
    (1, 1, 8, 9, 2, 3, 3, 2, 1, 1),                 # C = 1, multiplier 2, stride 2
    (2, 4, 21, 37, 1, 3, 3, 1, 1, 1),               # mobilenet 3x3: vector body + tails
    (2, 4, 22, 38, 1, 3, 3, 2, 1, 1),               # mobilenet 3x3 stride 2, even size
    (2, 4, 21, 37, 2, 3, 3, 2, 1, 1),               # stride 2, odd size, multiplier 2
    (1, 2, 20, 33, 1, 3, 3, 2, 3, 1),               # stride 2, padding 3 (shifted pairs)
    (1, 2, 20, 33, 1, 3, 3, (1, 2), (0, 1), (2, 1)),
    (2, 3, 19, 23, 1, 5, 5, 1, 2, 1),               # 5x5 (generic path)
    (1, 2, 19, 23, 2, 5, 5, 2, 2, 1),
    (1, 2, 10, 11, 1, 3, 3, 3, 0, 1),               # rows/cols no window reads
    (1, 2, 6, 64, 1, 3, 3, 1, 1, 1),                # a 64-column row: 4 float32 vectors
    (2, 2, 7, 130, 2, 3, 3, 1, 1, 1),               # blocks of 4 vectors and a tail
    (1, 2, 5, 1030, 1, 3, 3, 1, 1, 1),              # packed rows wider than the mask tables
    (1, 2, 5, 1030, 1, 3, 3, 2, 1, 1),              # the same at stride 2
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", EDGE)
def test_edge_cases(case, dtype, rng):
    n, c, h, wd, m, kh, kw, s, p, d = case
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((c * m, 1, kh, kw)).astype(dtype)
    b = rng.standard_normal(c * m).astype(dtype)
    check(x, w, b, s, p, d)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("extra", [(1, 0), (0, 1), (1, 1)])
def test_grad_in_larger_than_any_window(stride, extra, rng):
    """grad_in's H, W come from the caller (transposed conv's output_padding): rows and columns
    no window reads must be exactly 0. Oracle: the transposed conv with that output_padding."""
    c, h = 3, 9
    oh = _out(h, 3, stride, 0, 1)
    x = rng.standard_normal((2, c, h + extra[0], h + extra[1]))
    w = rng.standard_normal((c, 1, 3, 3))
    gy = rng.standard_normal((2, c, oh, oh))
    gx = np.full(x.shape, np.nan)
    k.backward_input(gy, w, gx, stride, stride, 0, 0, 1, 1, c, 2)
    if stride == 1:   # output_padding must be < stride: compare the windowed part
        assert_close(gx[:, :, :h, :h], conv2d_backward_input(gy, w, (2, c, h, h), 1, 0, 1, c))
    else:
        assert_close(gx, conv_transpose2d(gy, w, None, stride, 0, extra, c, 1))
    assert np.all(gx[:, :, h:, :] == 0) and np.all(gx[:, :, :, h:] == 0)


def test_thread_count_does_not_change_results(rng):
    """More planes and channels than threads, float32 (where summation order shows most)."""
    x = rng.standard_normal((3, 8, 30, 33)).astype(np.float32)
    for m, s, kk in [(1, 1, 3), (2, 2, 3), (1, 1, 5)]:
        w = rng.standard_normal((8 * m, 1, kk, kk)).astype(np.float32)
        check(x, w, rng.standard_normal(8 * m).astype(np.float32), s, kk // 2, 1)


def test_channel_blocks(rng):
    """More channels than one accumulator block holds (56 for 3x3, m = 1): backward_weight
    and the fused backward run several blocks per thread, the last one shorter."""
    x = rng.standard_normal((2, 130, 7, 9)).astype(np.float32)
    w = rng.standard_normal((130, 1, 3, 3)).astype(np.float32)
    check(x, w, None, 1, 1, 1)
    w = rng.standard_normal((260, 1, 3, 3)).astype(np.float32)
    check(x, w, None, 2, 1, 1)


def test_backward_checks_its_outputs():
    x = np.zeros((1, 2, 5, 5), np.float32)
    w = np.ones((2, 1, 3, 3), np.float32)
    gy = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="grad_in must have x's shape"):
        k.backward(x, gy, w, np.zeros((1, 2, 5, 4), np.float32), np.zeros_like(w),
                   1, 1, 0, 0, 1, 1, 2, 1)
    with pytest.raises(ValueError, match="grad_weight weight's"):
        k.backward(x, gy, w, np.zeros_like(x), np.zeros((2, 1, 3, 2), np.float32),
                   1, 1, 0, 0, 1, 1, 2, 1)


def test_empty_batch():
    x = np.zeros((0, 2, 5, 5), np.float32)
    w = np.ones((2, 1, 3, 3), np.float32)
    y = np.zeros((0, 2, 3, 3), np.float32)
    k.forward(x, w, np.zeros(0, np.float32), y, 1, 1, 0, 0, 1, 1, 2, 2)
    k.backward_input(y, w, x, 1, 1, 0, 0, 1, 1, 2, 2)
    gw = np.full(w.shape, np.nan, np.float32)
    k.backward_weight(x, y, gw, 1, 1, 0, 0, 1, 1, 2, 2)
    assert np.all(gw == 0)
    gw = np.full(w.shape, np.nan, np.float32)
    k.backward(x, y, w, x, gw, 1, 1, 0, 0, 1, 1, 2, 2)
    assert np.all(gw == 0)


_OTHER_TARGET_SCRIPT = """
import sys
import pytest
from fastconv._ext import conv2d_depthwise as k
assert k.simd_target() == sys.argv[1], k.simd_target()
sys.exit(pytest.main([sys.argv[2], "-q", "-x", "-p", "no:cacheprovider",
                      "-k", "not other_code_paths"]))
"""


@pytest.mark.parametrize("target", ["avx2", "generic"])
def test_other_code_paths(target):
    """Every test above again on a lower SIMD path (they differ from the best path only by
    rounding, and must match the reference and be thread-count independent just the same)."""
    out = run_on_simd_target(target, ["-c", _OTHER_TARGET_SCRIPT, target, __file__], timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
