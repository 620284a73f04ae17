"""im2col / col2im against the reference convolution and against each other (adjoint)."""
import numpy as np
import pytest

from fctest import assert_close
from fastconv._ext import im2col as k
from fastconv.reference import conv2d

CASES = [  # (N, C, H, W, kh, kw, stride, padding, dilation)
    (2, 3, 7, 9, 3, 3, (1, 1), (1, 1), (1, 1)),
    (1, 2, 8, 5, 3, 2, (2, 1), (0, 2), (1, 1)),
    (2, 1, 9, 9, 3, 3, (2, 2), (2, 2), (2, 2)),
    (1, 4, 5, 6, 1, 1, (1, 1), (0, 0), (1, 1)),
    (1, 2, 4, 4, 4, 4, (1, 1), (0, 0), (1, 1)),    # kernel as large as the input
    (2, 2, 3, 3, 5, 5, (3, 3), (1, 1), (1, 1)),    # kernel as large as the padded input
    (1, 3, 11, 4, 2, 3, (3, 2), (1, 0), (3, 1)),
]


def _out(h, k, s, p, d):
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_im2col_times_weight_is_conv(case, dtype, rng):
    n, c, h, w, kh, kw, s, p, d = case
    oh, ow = _out(h, kh, s[0], p[0], d[0]), _out(w, kw, s[1], p[1], d[1])
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((5, c, kh, kw)).astype(dtype)
    cols = np.full((n, c * kh * kw, oh * ow), np.nan, dtype)
    k.im2col(x, cols, kh, kw, *s, *p, *d, oh, ow, 2)
    y = np.einsum("ok,nkp->nop", wt.reshape(5, -1), cols).reshape(n, 5, oh, ow)
    assert_close(y, conv2d(x, wt, None, s, p, d), dtype)


@pytest.mark.parametrize("case", CASES)
def test_col2im_is_adjoint_of_im2col(case, rng):
    n, c, h, w, kh, kw, s, p, d = case
    oh, ow = _out(h, kh, s[0], p[0], d[0]), _out(w, kw, s[1], p[1], d[1])
    x = rng.standard_normal((n, c, h, w))
    g = rng.standard_normal((n, c * kh * kw, oh * ow))
    cols = np.empty_like(g)
    k.im2col(x, cols, kh, kw, *s, *p, *d, oh, ow, 1)
    gx = np.full_like(x, np.nan)
    k.col2im(g, gx, kh, kw, *s, *p, *d, oh, ow, 2)
    assert abs(np.vdot(cols, g) - np.vdot(x, gx)) <= 1e-10 * max(1.0, abs(np.vdot(cols, g)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("case", CASES + [(1, 45, 13, 37, 3, 3, (1, 1), (1, 1), (1, 1))])
def test_gemm_im2col_matches_explicit_columns(case, trans_b, dtype, rng):
    """The GEMM that packs B straight from the image equals gemm on im2col's matrix, bit for
    bit, for any thread count and for column blocks starting at an output row oh0 > 0."""
    from fastconv._ext import gemm as G
    _, c, h, w, kh, kw, s, p, d = case
    oh, ow = _out(h, kh, s[0], p[0], d[0]), _out(w, kw, s[1], p[1], d[1])
    x = rng.standard_normal((1, c, h, w)).astype(dtype)
    cols = np.empty((1, c * kh * kw, oh * ow), dtype)
    k.im2col(x, cols, kh, kw, *s, *p, *d, oh, ow, 1)
    for oh0 in sorted({0, oh // 2}):
        b = cols[0][:, oh0 * ow:]
        kdim = b.shape[0] if not trans_b else b.shape[1]
        for M in (5, 70):
            a = rng.standard_normal((M, kdim)).astype(dtype)
            want = np.empty((M, b.shape[0] if trans_b else b.shape[1]), dtype)
            G.gemm(a, b, want, False, trans_b)
            for nt in (1, 2, 3):
                got = np.full_like(want, np.nan)
                G.gemm_im2col(a, x[0], got, kh, kw, *s, *p, *d, oh, ow, oh0, False, trans_b,
                              n_threads=nt)
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", [
    (2, 3, 9, 70, 3, 4, (2, 2), (1, 1), (1, 1)),   # stride 2: runs of 33-34 taps, 2 vectors
    (1, 2, 6, 36, 2, 2, (2, 2), (0, 0), (1, 1)),   # runs of 18: one vector and a tail of 2
    (1, 2, 5, 9, 3, 3, (2, 2), (1, 1), (1, 1)),    # runs of 3-4: the tail only
])
def test_col2im_float32_matches_float64(case, rng):
    """Float32 col2im (stride 2: taps j and j + 1 interleaved into one run, by AVX-512
    where the CPU has it) against float64 col2im of the same columns."""
    n, c, h, w, kh, kw, s, p, d = case
    oh, ow = _out(h, kh, s[0], p[0], d[0]), _out(w, kw, s[1], p[1], d[1])
    g = rng.standard_normal((n, c * kh * kw, oh * ow)).astype(np.float32)
    gx = np.full((n, c, h, w), np.nan, np.float32)
    want = np.full((n, c, h, w), np.nan)
    k.col2im(g, gx, kh, kw, *s, *p, *d, oh, ow, 2)
    k.col2im(g.astype(np.float64), want, kh, kw, *s, *p, *d, oh, ow, 1)
    assert_close(gx, want, np.float32)
