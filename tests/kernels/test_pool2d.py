"""fastconv._ext.pool2d: every entry point against fastconv.reference.pool over grids of
geometry, plus ties, NaN, empty and edge cases and thread-count invariance."""
import itertools

import numpy as np
import pytest

from fctest import run_python
from fastconv._ext import pool2d as k
from fastconv.reference import pool as ref

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
KERNELS = [1, 2, 3, (2, 3)]
SIZES = [(7, 9), (6, 6), (5, 4)]


def _pair(v):
    return (v, v) if np.ndim(v) == 0 else tuple(v)


def _close(a, b, dtype):
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    assert a.shape == b.shape
    assert np.max(np.abs(a.astype(np.float64) - b), initial=0) <= RTOL[dtype] * scale


def _grid(avg):
    for kernel, s, p, d, ceil in itertools.product(KERNELS, (1, 2, 3), (0, 1), (1, 2),
                                                   (False, True)):
        kh, kw = _pair(kernel)
        if p > kh // 2 or p > kw // 2 or (avg and d != 1):
            continue
        yield kernel, s, p, d, ceil


def _sizes(h, w, kernel, s, p, d, ceil):
    kh, kw = _pair(kernel)
    try:
        return (ref.pool_output_size(h, kh, s, p, d, ceil),
                ref.pool_output_size(w, kw, s, p, d, ceil))
    except ValueError:
        return None


def _permutation(rng, shape, dtype):
    """Distinct values: no ties, so every implementation must pick the same argmax."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", SIZES)
def test_max_forward_backward_grid(dtype, hw, rng):
    for kernel, s, p, d, ceil in _grid(avg=False):
        out_hw = _sizes(*hw, kernel, s, p, d, ceil)
        if out_hw is None:
            continue
        kh, kw = _pair(kernel)
        x = rng.standard_normal((2, 3) + hw).astype(dtype)
        x[0, 0] = np.round(x[0, 0])          # ties
        out = np.full((2, 3) + out_hw, np.nan, dtype)
        idx = np.full(out.shape, -7, np.int64)
        k.max_forward(x, out, idx, kh, kw, s, s, p, p, d, d, 2)
        ro, ri = ref.max_pool2d(x, kernel, s, p, d, ceil)
        what = (kernel, s, p, d, ceil)
        assert np.array_equal(out, ro), what
        assert np.array_equal(idx, ri), what
        values_only = np.full(out.shape, np.nan, dtype)      # inference: no indices stored
        k.max_forward(x, values_only, None, kh, kw, s, s, p, p, d, d, 2)
        assert np.array_equal(values_only, ro), what
        gy = rng.standard_normal(out.shape).astype(dtype)
        gx = np.full(x.shape, np.nan, dtype)
        k.max_backward(gy, idx, gx, 2)
        _close(gx, ref.max_pool2d_backward(gy, ri, x.shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_forward_backward_grid(dtype, hw, count_include_pad, rng):
    for kernel, s, p, d, ceil in _grid(avg=True):
        out_hw = _sizes(*hw, kernel, s, p, 1, ceil)
        if out_hw is None:
            continue
        kh, kw = _pair(kernel)
        x = rng.standard_normal((2, 3) + hw).astype(dtype)
        for override in (None, 5):
            out = np.full((2, 3) + out_hw, np.nan, dtype)
            k.avg_forward(x, out, kh, kw, s, s, p, p, count_include_pad, override or 0, 2)
            _close(out, ref.avg_pool2d(x, kernel, s, p, ceil, count_include_pad, override),
                   dtype)
            gy = rng.standard_normal(out.shape).astype(dtype)
            gx = np.full(x.shape, np.nan, dtype)
            k.avg_backward(gy, gx, kh, kw, s, s, p, p, count_include_pad, override or 0, 2)
            _close(gx, ref.avg_pool2d_backward(gy, x.shape, kernel, s, p, ceil,
                                               count_include_pad, override), dtype)


ADAPTIVE = [((7, 9), (3, 4)), ((5, 5), (1, 1)), ((8, 8), (4, 4)), ((4, 6), (5, 7)),
            ((10, 3), (3, 2)), ((1, 1), (2, 3)), ((6, 7), (6, 7))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw, out_hw", ADAPTIVE)
def test_adaptive(dtype, hw, out_hw, rng):
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    x[1, 2] = np.round(x[1, 2])
    out = np.full((2, 3) + out_hw, np.nan, dtype)
    k.adaptive_avg_forward(x, out, 2)
    _close(out, ref.adaptive_avg_pool2d(x, out_hw), dtype)
    gy = rng.standard_normal(out.shape).astype(dtype)
    gx = np.full(x.shape, np.nan, dtype)
    k.adaptive_avg_backward(gy, gx, 2)
    _close(gx, ref.adaptive_avg_pool2d_backward(gy, x.shape), dtype)
    idx = np.empty(out.shape, np.int64)
    k.adaptive_max_forward(x, out, idx, 2)
    ro, ri = ref.adaptive_max_pool2d(x, out_hw)
    assert np.array_equal(out, ro) and np.array_equal(idx, ri)
    k.max_backward(gy, idx, gx, 2)
    _close(gx, ref.adaptive_max_pool2d_backward(gy, ri, x.shape), dtype)


@pytest.mark.parametrize("shape", [(1, 1, 5, 7), (1, 3, 112, 113), (3, 1, 2, 2), (2, 5, 1, 9)])
@pytest.mark.parametrize("geom", [(2, 2, 0, 1), (3, 2, 1, 1), (3, 1, 1, 1), (2, 1, 0, 1),
                                  (3, 2, 1, 2), (2, 2, 1, 1)])
def test_fast_paths_and_edges(shape, geom, rng):
    """Shapes that hit the row kernels (2x2 / 3x3) and their borders, N = 1, C = 1."""
    kern, s, p, d = geom
    for ceil in (False, True):
        out_hw = _sizes(*shape[2:], kern, s, p, d, ceil)
        if out_hw is None:
            continue
        x = _permutation(rng, shape, np.float32)
        out = np.empty(shape[:2] + out_hw, np.float32)
        idx = np.empty(out.shape, np.int64)
        k.max_forward(x, out, idx, kern, kern, s, s, p, p, d, d, 2)
        ro, ri = ref.max_pool2d(x, kern, s, p, d, ceil)
        assert np.array_equal(out, ro) and np.array_equal(idx, ri)
        if d == 1:
            k.avg_forward(x, out, kern, kern, s, s, p, p, True, 0, 2)
            _close(out, ref.avg_pool2d(x, kern, s, p, ceil), np.float32)


def test_ties_first_maximum_wins():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 0] = x[0, 0, 0, 1] = x[0, 0, 1, 1] = 3   # window (0, 0): first max at (0, 1)
    out = np.empty((1, 1, 2, 2), np.float32)
    idx = np.empty(out.shape, np.int64)
    k.max_forward(x, out, idx, 2, 2, 2, 2, 0, 0, 1, 1, 1)
    assert idx[0, 0, 0, 0] == 1
    assert idx[0, 0, 0, 1] == 2 and idx[0, 0, 1, 0] == 8   # all-zero windows: their first
    ones = np.ones((1, 1, 6, 6))
    out, idx = np.empty((1, 1, 3, 3)), np.empty((1, 1, 3, 3), np.int64)
    k.max_forward(ones, out, idx, 3, 3, 2, 2, 1, 1, 1, 1, 1)
    assert np.array_equal(idx, ref.max_pool2d(ones, 3, 2, 1)[1])
    assert idx[0, 0, 1, 1] == 1 * 6 + 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)])
def test_nan_propagates_with_its_index(dtype, geom, rng):
    kern, s, p = geom
    x = rng.standard_normal((2, 2, 9, 10)).astype(dtype)
    x[0, 1, 4, 5] = np.nan
    x[0, 1, 4, 6] = np.nan
    x[1, 0, 0, 0] = np.inf
    out_hw = _sizes(9, 10, kern, s, p, 1, False)
    out = np.empty((2, 2) + out_hw, dtype)
    idx = np.empty(out.shape, np.int64)
    k.max_forward(x, out, idx, kern, kern, s, s, p, p, 1, 1, 2)
    ro, ri = ref.max_pool2d(x, kern, s, p)
    assert np.array_equal(out, ro, equal_nan=True) and np.array_equal(idx, ri)
    assert np.isnan(out[0, 1]).any()
    k.adaptive_max_forward(x, out, idx, 2)
    ro, ri = ref.adaptive_max_pool2d(x, out_hw)
    assert np.array_equal(out, ro, equal_nan=True) and np.array_equal(idx, ri)


def test_window_without_input_gives_minus_inf_and_backward_skips_it():
    """k=2, d=3, p=1 on H=2: the taps (-1, 2) miss the input, as can happen in PyTorch."""
    x = np.ones((1, 1, 2, 2))
    out, idx = np.empty((1, 1, 1, 1)), np.empty((1, 1, 1, 1), np.int64)
    k.max_forward(x, out, idx, 2, 2, 1, 1, 1, 1, 3, 3, 1)
    ro, ri = ref.max_pool2d(x, 2, 1, 1, 3)
    assert out[0, 0, 0, 0] == -np.inf and np.array_equal(idx, ri)
    gx = np.full(x.shape, np.nan)
    k.max_backward(np.ones((1, 1, 1, 1)), idx, gx, 1)
    assert np.array_equal(gx, np.zeros_like(x))


def test_empty_batch_is_a_no_op():
    x = np.zeros((0, 3, 4, 4), np.float32)
    out = np.zeros((0, 3, 2, 2), np.float32)
    idx = np.zeros(out.shape, np.int64)
    k.max_forward(x, out, idx, 2, 2, 2, 2, 0, 0, 1, 1, 2)
    k.max_backward(out, idx, x, 2)
    k.avg_forward(x, out, 2, 2, 2, 2, 0, 0, True, 0, 2)
    k.adaptive_avg_forward(x, out, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bit_identical_for_1_and_2_threads(dtype, rng):
    x = rng.standard_normal((3, 5, 17, 19)).astype(dtype)
    x[0, 0, 3, 3] = np.nan
    gy9 = rng.standard_normal((3, 5, 9, 10)).astype(dtype)
    runs = []
    for threads in (1, 2):
        o, i = np.empty((3, 5, 9, 10), dtype), np.empty((3, 5, 9, 10), np.int64)
        k.max_forward(x, o, i, 3, 3, 2, 2, 1, 1, 1, 1, threads)
        gx = np.empty_like(x)
        k.max_backward(gy9, i, gx, threads)
        a = np.empty((3, 5, 8, 9), dtype)
        k.avg_forward(x, a, 3, 3, 2, 2, 1, 1, False, 0, threads)
        ga = np.empty_like(x)
        k.avg_backward(a, ga, 3, 3, 2, 2, 1, 1, False, 0, threads)
        g = np.empty((3, 5, 1, 1), dtype)
        k.adaptive_avg_forward(x, g, threads)
        gg = np.empty_like(x)
        k.adaptive_avg_backward(g, gg, threads)
        runs.append((o, i, gx, a, ga, g, gg))
    for r1, r2 in zip(*runs):
        assert np.array_equal(r1, r2, equal_nan=True)


_SIMD_SCRIPT = r"""
import sys
import numpy as np
from fastconv._ext import pool2d as k
from fastconv.reference import pool as ref
print(k.simd_target())
rng = np.random.default_rng(7)
for shape in [(2, 3, 9, 70), (1, 2, 40, 37), (2, 2, 6, 16), (1, 1, 5, 11)]:
    x = np.round(rng.standard_normal(shape) * 2).astype(np.float32)   # many ties
    x[0, 0, 2, 17 % shape[3]] = np.nan
    x[0, 0, 2, 19 % shape[3]] = np.nan
    x[-1, -1, -1, -1] = np.inf
    x[-1, 0, 1, 3] = -np.inf
    for kern, s, p in [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0), (3, 2, 0), (2, 2, 1)]:
        for ceil in (False, True):
            try:
                oh = ref.pool_output_size(shape[2], kern, s, p, 1, ceil)
                ow = ref.pool_output_size(shape[3], kern, s, p, 1, ceil)
            except ValueError:
                continue
            out = np.empty(shape[:2] + (oh, ow), np.float32)
            idx = np.empty(out.shape, np.int64)
            k.max_forward(x, out, idx, kern, kern, s, s, p, p, 1, 1, 2)
            ro, ri = ref.max_pool2d(x, kern, s, p, 1, ceil)
            if not (np.array_equal(out, ro, equal_nan=True) and np.array_equal(idx, ri)):
                sys.exit(f"mismatch {shape} {(kern, s, p, ceil)}")
            vals = np.full(out.shape, 5.0, np.float32)      # inference: values only
            k.max_forward(x, vals, None, kern, kern, s, s, p, p, 1, 1, 2)
            if not np.array_equal(vals, ro, equal_nan=True):
                sys.exit(f"values-only mismatch {shape} {(kern, s, p, ceil)}")
# global average (float32 SIMD sum): plane sizes around the 16/32-lane blocks, plane counts
# around the 64-plane blocks, NaN and inf
for hw in [(1, 1), (1, 3), (4, 4), (1, 17), (5, 6), (8, 4), (3, 11), (7, 7), (8, 8), (10, 10)]:
    x = rng.standard_normal((3, 43) + hw).astype(np.float32)
    x[1, 2, 0, 0] = np.nan
    x[2, 5, -1, -1] = np.inf
    out = np.empty((3, 43, 1, 1), np.float32)
    k.adaptive_avg_forward(x, out, 2)
    want = ref.adaptive_avg_pool2d(x, (1, 1))
    if not np.allclose(out, want, rtol=1e-5, atol=1e-6, equal_nan=True):
        sys.exit(f"global average mismatch {hw}")
    one = np.empty_like(out)
    k.adaptive_avg_forward(x, one, 1)
    if not np.array_equal(out, one, equal_nan=True):
        sys.exit(f"global average differs with the thread count {hw}")
    gy = rng.standard_normal(out.shape).astype(np.float32)
    gx = np.full(x.shape, np.nan, np.float32)
    k.adaptive_avg_backward(gy, gx, 2)
    if not np.allclose(gx, ref.adaptive_avg_pool2d_backward(gy, x.shape), rtol=1e-6, atol=0):
        sys.exit(f"global average backward mismatch {hw}")
# max backward: 2x2 stride-2 planes are written row by row (float32 SIMD) when every index
# lies in its window's 2x2 block; other indices (3x3 windows) fall back to the scatter
for shape in [(2, 3, 9, 70), (1, 2, 40, 37), (2, 2, 6, 33), (1, 1, 3, 32), (1, 2, 8, 23)]:
    x = np.round(rng.standard_normal(shape) * 2).astype(np.float32)
    x[0, 0, 2, 17] = np.nan
    for kern, s, p in [(2, 2, 0), (3, 2, 0), (3, 2, 1), (2, 2, 1)]:
        for ceil in (False, True):
            try:
                oh = ref.pool_output_size(shape[2], kern, s, p, 1, ceil)
                ow = ref.pool_output_size(shape[3], kern, s, p, 1, ceil)
            except ValueError:
                continue
            out = np.empty(shape[:2] + (oh, ow), np.float32)
            idx = np.empty(out.shape, np.int64)
            k.max_forward(x, out, idx, kern, kern, s, s, p, p, 1, 1, 2)
            gy = rng.standard_normal(out.shape).astype(np.float32)
            gy[0, 0, 0, :3] = -0.0
            gx = np.full(shape, np.nan, np.float32)
            k.max_backward(gy, idx, gx, 2)
            want = ref.max_pool2d_backward(gy, idx, shape)
            if not (np.allclose(gx, want, rtol=1e-6, atol=0) and not np.signbit(gx[gx == 0]).any()):
                sys.exit(f"max backward mismatch {shape} {(kern, s, p, ceil)}")
# an index 2**32 (or -2**32) off its tap is outside the plane: skipped by the scatter, never
# taken for the tap it equals in its low 32 bits
x = rng.standard_normal((1, 2, 6, 40)).astype(np.float32)
out, idx = np.empty((1, 2, 3, 20), np.float32), np.empty((1, 2, 3, 20), np.int64)
k.max_forward(x, out, idx, 2, 2, 2, 2, 0, 0, 1, 1, 2)
gy = rng.standard_normal(out.shape).astype(np.float32)
for off in (2**32, -2**32):
    bad = idx.copy()
    bad[0, 1, 1, 9] += off
    gx = np.full(x.shape, np.nan, np.float32)
    k.max_backward(gy, bad, gx, 2)
    if not np.array_equal(gx, ref.max_pool2d_backward(gy, bad, x.shape)):
        sys.exit(f"max backward took an index {off:+d} off its tap")
# 2x2 stride-2 average (float32 SIMD planes), forward and backward, borders and overrides
for shape in [(2, 3, 9, 70), (1, 2, 40, 37), (2, 2, 6, 33), (1, 1, 3, 32)]:
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, 2, 17] = np.nan
    for p, ceil, incl, div in [(0, False, True, 0), (1, False, True, 0), (1, True, False, 0),
                               (0, True, True, 3), (1, False, False, 5)]:
        want = ref.avg_pool2d(x, 2, 2, p, ceil, incl, div or None)
        out = np.empty(want.shape, np.float32)
        k.avg_forward(x, out, 2, 2, 2, 2, p, p, incl, div, 2)
        if not np.allclose(out, want, rtol=1e-5, atol=1e-6, equal_nan=True):
            sys.exit(f"avg mismatch {shape} {(p, ceil, incl, div)}")
        gy = rng.standard_normal(want.shape).astype(np.float32)
        gx = np.full(shape, np.nan, np.float32)
        k.avg_backward(gy, gx, 2, 2, 2, 2, p, p, incl, div, 2)
        gwant = ref.avg_pool2d_backward(gy, shape, 2, 2, p, ceil, incl, div or None)
        if not np.allclose(gx, gwant, rtol=1e-5, atol=1e-6):
            sys.exit(f"avg backward mismatch {shape} {(p, ceil, incl, div)}")
# taps along H strided or dilated differently from W (the row kernels need only dw = 1)
x = rng.standard_normal((2, 3, 23, 53)).astype(np.float32)
x[1, 2, 7, 20] = np.nan
x[0, 1, 0, :] = -np.inf
for kern, s, p, d in [(3, (3, 2), 1, (2, 1)), (2, (1, 2), (1, 0), (3, 1)), (3, (2, 1), (0, 1), 1)]:
    ro, ri = ref.max_pool2d(x, kern, s, p, d)
    s2, p2, d2 = (s, s) if np.isscalar(s) else s, (p, p) if np.isscalar(p) else p, (d, d) if np.isscalar(d) else d
    out, idx = np.empty(ro.shape, np.float32), np.empty(ro.shape, np.int64)
    k.max_forward(x, out, idx, kern, kern, *s2, *p2, *d2, 2)
    vals = np.empty(ro.shape, np.float32)
    k.max_forward(x, vals, None, kern, kern, *s2, *p2, *d2, 1)
    if not (np.array_equal(out, ro, equal_nan=True) and np.array_equal(idx, ri)
            and np.array_equal(vals, ro, equal_nan=True)):
        sys.exit(f"mismatch {(kern, s, p, d)}")
"""


_MEANS_SCRIPT = r"""
import hashlib
import numpy as np
from fastconv._ext import pool2d as k
rng = np.random.default_rng(3)
h = hashlib.sha256()
for hw in [(1, 1), (1, 3), (4, 4), (1, 17), (5, 6), (8, 4), (3, 11), (7, 7), (8, 8), (10, 10)]:
    x = (rng.standard_normal((3, 43) + hw) * 1e3).astype(np.float32)
    x[0, 1] = -0.0
    out = np.empty((3, 43, 1, 1), np.float32)
    k.adaptive_avg_forward(x, out, 2)
    h.update(out.tobytes())
print(k.simd_target(), h.hexdigest())
"""


def test_global_average_is_the_same_on_the_avx2_and_portable_paths():
    """The AVX2 global average sums 8 planes at a time in the portable path's 8 partial sums
    and order: the same bits (AVX-512 has its own order and is not compared)."""
    import os
    got = {}
    for target in ("avx2", "sse2", "generic"):
        res = run_python(["-c", _MEANS_SCRIPT], env=dict(os.environ, FASTCONV_POOL_TARGET=target),
                         timeout=300)
        assert res.returncode == 0, res.stderr + res.stdout
        ran, digest = res.stdout.split()
        got[ran] = digest
    if "avx2" not in got:
        pytest.skip("the AVX2 path did not run (no AVX2, or AVX-512 taken first)")
    assert len(set(got.values())) == 1, got


@pytest.mark.parametrize("target", ["avx512f", "avx2", "sse2", "generic"])
def test_every_simd_path_matches_the_reference(target):
    """Each float32 row-kernel path (forced through FASTCONV_POOL_TARGET in a fresh process,
    where it is read) on wide rows with ties, NaN and inf; a path the CPU lacks falls back to
    the best one it has, which must match too."""
    import os
    env = dict(os.environ, FASTCONV_POOL_TARGET=target)
    res = run_python(["-c", _SIMD_SCRIPT], env=env, timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout
    if target != "avx512f":
        assert res.stdout.split()[0] in (target, "sse2", "generic")
