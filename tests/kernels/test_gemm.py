"""fastconv._ext.gemm (src/fc_gemm.c) against a long-double matmul oracle.

Sizes are chosen to hit every blocking edge of every code path: the micro-tiles (AVX-512
12 x 32 / 12 x 16, AVX2 6 x 16 / 6 x 8, portable 4 x 8), the cache blocks (KC 256-384,
NC 192-512, MC 1200) and the thread split. Other code paths than the one this CPU picks are
run in a subprocess with FASTCONV_GEMM_TARGET set.
"""
import itertools
import textwrap

import numpy as np
import pytest

from fastconv._ext import gemm as G
from fctest import run_on_simd_target

DTYPES = [np.float32, np.float64]
TRANS = list(itertools.product([False, True], repeat=2))
# Relative to sqrt(K) * max(|alpha| |op(A)| @ |op(B)| + |beta C|): a few units in the last
# place per sqrt(K), the growth of a rounding error in a k-long sum of random signs.
RTOL = {np.dtype(np.float32): 2e-7, np.dtype(np.float64): 4e-16}

SHAPES = [  # M, N, K
    (1, 1, 1),
    (17, 31, 7),
    (12, 32, 16),      # exactly one AVX-512 float tile
    (13, 33, 17),      # one more than a tile each way
    (4, 8, 3),
    (5, 9, 385),       # K just over KC (float)
    (64, 64, 257),     # K just over KC (double)
    (25, 700, 40),     # N over NC, several column panels plus a ragged one
    (7, 3, 1000),      # K over two KC blocks, tiny tile
    (1213, 5, 9),      # M over MC
    (3, 1, 2),
    (1, 50, 1),
]


def _op(x, t):
    return x.T if t else x


def _rand(rng, shape, dtype):
    return rng.uniform(-1, 1, shape).astype(dtype)


def _operands(rng, M, N, K, ta, tb, dtype):
    a = _rand(rng, (K, M) if ta else (M, K), dtype)
    b = _rand(rng, (N, K) if tb else (K, N), dtype)
    return a, b


def _oracle(a, b, c, ta, tb, alpha, beta):
    """alpha op(a) @ op(b) + beta c in long double; c is not read when beta == 0."""
    ld = np.longdouble
    out = ld(alpha) * (_op(a.astype(ld), ta) @ _op(b.astype(ld), tb))
    if beta != 0:
        out = out + ld(beta) * c.astype(ld)
    return out


def _check(got, a, b, c0, ta, tb, alpha, beta):
    dtype = got.dtype
    ref = _oracle(a, b, c0, ta, tb, alpha, beta)
    K = _op(a, ta).shape[1]
    mag = abs(alpha) * (np.abs(_op(a, ta)).astype(np.float64) @ np.abs(_op(b, tb)))
    if beta != 0:
        mag = mag + abs(beta) * np.abs(c0.astype(np.float64))
    scale = float(mag.max()) if mag.size else 0.0
    tol = RTOL[dtype] * np.sqrt(max(K, 1)) * max(scale, np.finfo(dtype).tiny)
    err = float(np.max(np.abs(got.astype(np.longdouble) - ref))) if got.size else 0.0
    assert err <= tol, f"max abs err {err:.3g} > tol {tol:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_matches_oracle(rng, dtype, ta, tb, M, N, K):
    a, b = _operands(rng, M, N, K, ta, tb, dtype)
    c = np.full((M, N), np.nan, dtype)  # beta == 0: C must not be read
    G.gemm(a, b, c, ta, tb)
    assert not np.isnan(c).any()
    _check(c, a, b, c, ta, tb, 1.0, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("alpha,beta", [(0.5, 0.0), (-1.5, 2.0), (1.0, 1.0), (0.0, 0.5),
                                        (2.0, -1.0), (1.0, 0.0)])
def test_alpha_beta(rng, dtype, ta, tb, alpha, beta):
    M, N, K = 29, 45, 400
    a, b = _operands(rng, M, N, K, ta, tb, dtype)
    c0 = _rand(rng, (M, N), dtype)
    if beta == 0:
        c0[:] = np.nan
    c = c0.copy()
    G.gemm(a, b, c, ta, tb, alpha, beta)
    assert not np.isnan(c).any()
    _check(c, a, b, c0, ta, tb, alpha, beta)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("M,N,K", [(13, 37, 29), (40, 70, 400), (1, 1, 3)])
def test_leading_dimensions(rng, dtype, ta, tb, M, N, K):
    """Operands and output are windows of larger arrays (ld > width); nothing outside the
    output window is written."""
    a_shape = (K, M) if ta else (M, K)
    b_shape = (N, K) if tb else (K, N)
    a_big = _rand(rng, (a_shape[0] + 3, a_shape[1] + 5), dtype)
    b_big = _rand(rng, (b_shape[0] + 2, b_shape[1] + 7), dtype)
    c_big = _rand(rng, (M + 4, N + 9), dtype)
    a = a_big[1:1 + a_shape[0], 2:2 + a_shape[1]]
    b = b_big[2:2 + b_shape[0], 3:3 + b_shape[1]]
    c = c_big[3:3 + M, 4:4 + N]
    c0 = c.copy()
    outside = c_big.copy()
    G.gemm(a, b, c, ta, tb, 0.75, -0.5)
    _check(c, np.ascontiguousarray(a), np.ascontiguousarray(b), c0, ta, tb, 0.75, -0.5)
    outside[3:3 + M, 4:4 + N] = c
    np.testing.assert_array_equal(c_big, outside)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N,K", [(0, 5, 3), (5, 0, 3), (0, 0, 0), (4, 6, 0), (31, 33, 0)])
@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_empty(dtype, M, N, K, beta):
    a = np.ones((M, K), dtype)
    b = np.ones((K, N), dtype)
    c = np.full((M, N), 3.0, dtype)
    G.gemm(a, b, c, beta=beta, n_threads=2)
    np.testing.assert_array_equal(c, np.full((M, N), 3.0 * beta, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", TRANS)
def test_nan_inf_propagate(rng, dtype, ta, tb):
    M, N, K = 30, 50, 70
    a, b = _operands(rng, M, N, K, ta, tb, dtype)
    opa, opb = _op(a, ta), _op(b, tb)  # views: writing them writes a, b
    opa[3, 10] = np.nan
    opa[7, 20] = np.inf
    opa[25, 69] = -np.inf
    opb[5, 44] = np.nan
    opb[20, 3] = 0.0  # inf * 0 = nan in C[7, 3]
    for alpha in (1.0, 0.0):  # alpha == 0 still propagates, as in a plain dot product
        c = np.full((M, N), np.nan, dtype)
        G.gemm(a, b, c, ta, tb, alpha, 0.0)
        with np.errstate(invalid="ignore"):
            ref = _oracle(a, b, c, ta, tb, alpha, 0.0)
        np.testing.assert_array_equal(np.isnan(c), np.isnan(ref))
        np.testing.assert_array_equal(np.isposinf(c), np.isposinf(ref))
        np.testing.assert_array_equal(np.isneginf(c), np.isneginf(ref))
        assert np.isnan(c[3]).all() and np.isnan(c[:, 44]).all() and np.isnan(c[7, 3])


THREAD_SHAPES = [  # (M, N, K, trans_b): small M, small N, square-ish, ragged everything
    (64, 576, 500, True),
    (256, 64, 700, False),
    (37, 129, 401, False),
    (150, 200, 100, True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N,K,tb", THREAD_SHAPES)
def test_bit_identical_across_threads(rng, dtype, M, N, K, tb):
    a, b = _operands(rng, M, N, K, False, tb, dtype)
    c0 = _rand(rng, (M, N), dtype)
    results = []
    for n_threads in (1, 2, 3, 4):
        c = c0.copy()
        G.gemm(a, b, c, False, tb, 1.25, 0.5, n_threads=n_threads)
        results.append(c)
    _check(results[0], a, b, c0, False, tb, 1.25, 0.5)
    for c in results[1:]:
        np.testing.assert_array_equal(c.view(np.uint8), results[0].view(np.uint8))


def test_rejects_bad_operands():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="expected op"):
        G.gemm(a, np.ones((5, 2), np.float32), np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="expected op"):
        G.gemm(a, np.ones((4, 2), np.float32), np.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match="contiguous rows"):
        G.gemm(np.ones((4, 6), np.float32)[:, ::2], np.ones((3, 2), np.float32),
               np.empty((4, 2), np.float32))


def test_simd_targets():
    compiled, active = G.simd_targets()
    assert compiled[-1] == "generic"
    assert active in compiled


_OTHER_TARGET_SCRIPT = textwrap.dedent("""
    import itertools, sys
    import numpy as np
    from fastconv._ext import gemm as G
    want = sys.argv[1]
    assert G.simd_targets()[1] == want, G.simd_targets()
    rng = np.random.default_rng(0)
    ld = np.longdouble
    shapes = [(1, 1, 1), (7, 9, 5), (13, 17, 300), (6, 16, 8), (30, 70, 600), (64, 576, 300)]
    for dt, (ta, tb), (M, N, K) in itertools.product(
            [np.float32, np.float64], itertools.product([0, 1], repeat=2), shapes):
        a = rng.uniform(-1, 1, (K, M) if ta else (M, K)).astype(dt)
        b = rng.uniform(-1, 1, (N, K) if tb else (K, N)).astype(dt)
        c0 = rng.uniform(-1, 1, (M, N)).astype(dt)
        opa, opb = (a.T if ta else a), (b.T if tb else b)
        ref = 0.5 * (opa.astype(ld) @ opb.astype(ld)) - 2.0 * c0.astype(ld)
        scale = (0.5 * (np.abs(opa).astype(float) @ np.abs(opb)) + 2.0 * np.abs(c0)).max()
        rtol = 2e-7 if dt == np.float32 else 4e-16
        outs = []
        for nt in (1, 2, 3):
            c = c0.copy()
            G.gemm(a, b, c, ta, tb, 0.5, -2.0, n_threads=nt)
            outs.append(c)
        err = float(np.abs(outs[0].astype(ld) - ref).max())
        assert err <= rtol * np.sqrt(K) * scale, (want, dt, ta, tb, M, N, K, err)
        assert all(np.array_equal(o, outs[0]) for o in outs[1:]), (want, dt, M, N, K)
        c = np.full((M, N), np.nan, dt)
        G.gemm(a, b, c, ta, tb)
        assert not np.isnan(c).any(), (want, dt, M, N, K)
    for dt, tb in itertools.product([np.float32, np.float64], [0, 1]):   # row-offset B
        x = rng.uniform(-1, 1, 5000).astype(dt)
        rowoff = rng.integers(0, 2000, 37)
        t = np.arange(300)
        b = x[rowoff[:, None] + (t // 70) * 90 + t % 70]
        a = rng.uniform(-1, 1, (9, b.shape[1] if tb else b.shape[0])).astype(dt)
        want_c = np.empty((9, b.shape[0] if tb else b.shape[1]), dt)
        G.gemm(a, np.ascontiguousarray(b), want_c, False, tb)
        got = np.empty_like(want_c)
        G.gemm_rows(a, x, rowoff, 70, 90, 300, got, False, tb, n_threads=2)
        assert np.array_equal(got, want_c), (want, dt, tb)
    print("OK")
""")


@pytest.mark.parametrize("target", ["avx2", "generic"])
def test_other_code_paths(target):
    out = run_on_simd_target(target, ["-c", _OTHER_TARGET_SCRIPT, target])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"


# ------------------------------------------------------------------ the row-offset B form
def _rows_matrix(x, rowoff, seg, segstride, ncols):
    t = np.arange(ncols)
    return x[rowoff[:, None] + (t // seg) * segstride + t % seg]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("rows, ncols, seg, segstride", [
    (1, 1, 1, 0),
    (9, 40, 40, 0),        # one segment, one panel and a ragged one
    (300, 70, 23, 50),     # k over KC (trans_b == 0), segments splitting panels
    (33, 1000, 97, 400),   # k over KC (trans_b == 1) and panel rows crossing segments
    (7, 64, 32, 32),       # segments back to back: a plain matrix
])
def test_gemm_rows_matches_explicit_matrix(rng, dtype, tb, rows, ncols, seg, segstride):
    x = rng.uniform(-1, 1, 20000).astype(dtype)
    rowoff = rng.integers(0, 20000 - ((ncols - 1) // seg * segstride + seg), rows)
    b = _rows_matrix(x, rowoff, seg, segstride, ncols)
    opb = b.T if tb else b
    M = 13
    a = rng.uniform(-1, 1, (M, opb.shape[0])).astype(dtype)
    want = np.empty((M, opb.shape[1]), dtype)
    G.gemm(a, np.ascontiguousarray(b), want, False, tb)
    outs = []
    for nt in (1, 2, 3):
        got = np.full((M, opb.shape[1]), np.nan, dtype)
        G.gemm_rows(a, x, rowoff, seg, segstride, ncols, got, False, tb, n_threads=nt)
        outs.append(got)
    # the same packed values as the explicit matrix: the same result, bit for bit
    for got in outs:
        np.testing.assert_array_equal(got, want)


def test_gemm_rows_rejects_reads_outside_x():
    x = np.zeros(100, np.float32)
    c = np.zeros((2, 10), np.float32)
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="outside x of length 100"):
        G.gemm_rows(a, x, np.array([0, 10, 91]), 10, 0, 10, c)
    with pytest.raises(ValueError, match="expected len"):
        G.gemm_rows(a, x, np.array([0, 10, 20]), 0, 0, 10, c)
