"""fastconv._ext.batchnorm2d against the NumPy reference: training/eval forward, running-stat
update, backward (training and eval), numerical soundness on large means, thread-count
bit-identity, NaN propagation, outputs at any alignment, short planes and every SIMD path."""
import numpy as np
import pytest

from fctest import assert_close, run_python
from fastconv._ext import batchnorm2d as k
from fastconv.reference import batchnorm as ref

DTYPES = [np.float32, np.float64]
# (N, C, L): N = 1, C = 1, odd sizes, a plane longer than one 2048-value chunk, and the two
# schedules (C >= 4 * threads: by channel; fewer: planes of one channel split over threads)
SHAPES = [(4, 3, 25), (1, 5, 49), (7, 1, 9), (2, 2, 1), (3, 9, 4100), (16, 8, 33), (5, 2, 3)]


def _empty(dt):
    return np.empty(0, dt)


def _train(x3, w, b, rm, rv, n_threads, eps=1e-5, momentum=0.1):
    c, dt = x3.shape[1], x3.dtype
    out = np.full_like(x3, np.nan)
    mean, invstd = np.full(c, np.nan), np.full(c, np.nan)
    k.forward_train(x3, _empty(dt) if w is None else w, _empty(dt) if b is None else b, eps,
                    out, mean, invstd, _empty(dt) if rm is None else rm,
                    _empty(dt) if rv is None else rv, momentum, n_threads)
    return out, mean, invstd


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_forward_train_and_running_stats(shape, dtype, affine, rng):
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    c = shape[1]
    w = rng.standard_normal(c).astype(dtype) if affine else None
    b = rng.standard_normal(c).astype(dtype) if affine else None
    rm, rv = rng.standard_normal(c).astype(dtype), rng.random(c).astype(dtype) + 0.5
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y, mean, invstd = _train(x, w, b, rm, rv, 2, momentum=0.3)
    y_ref, mean_ref, invstd_ref = ref.batch_norm_train(x, w, b)
    ref.update_running_stats(x, rm_ref, rv_ref, momentum=0.3)
    assert_close(y, y_ref, dtype, what="out")
    # statistics are double, from sums whose short runs are in the data type
    stat_tol = 1e-6 if dtype == np.float32 else 1e-10
    assert_close(mean, mean_ref, tol=stat_tol, what="mean")
    assert_close(invstd, invstd_ref, tol=stat_tol, what="invstd")
    assert_close(rm, rm_ref, dtype, what="running_mean")
    assert_close(rv, rv_ref, dtype, what="running_var")


@pytest.mark.parametrize("dtype", DTYPES)
def test_running_stats_exact_update_rule(dtype, rng):
    """r = (1 - m) r + m stat in double, unbiased variance, as PyTorch."""
    x = rng.standard_normal((3, 2, 5)).astype(dtype)
    rm, rv = np.array([0.5, -1.0], dtype), np.array([2.0, 0.25], dtype)
    mean, var = ref.batch_norm_stats(x)
    expect_m = (0.1 * mean + 0.9 * rm.astype(np.float64)).astype(dtype)
    expect_v = (0.1 * var * 15 / 14 + 0.9 * rv.astype(np.float64)).astype(dtype)
    _train(x, None, None, rm, rv, 1)
    np.testing.assert_allclose(rm, expect_m, rtol=np.finfo(dtype).eps * 4)
    np.testing.assert_allclose(rv, expect_v, rtol=np.finfo(dtype).eps * 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_eval(shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.random(c).astype(dtype) + 0.1
    out = np.full_like(x, np.nan)
    k.forward_eval(x, rm, rv, w, b, 1e-3, out, 2)
    assert_close(out, ref.batch_norm_eval(x, rm, rv, w, b, 1e-3), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_backward_train(shape, dtype, affine, rng):
    x = rng.standard_normal(shape).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    w = rng.standard_normal(c).astype(dtype) if affine else None
    _, mean, invstd = _train(x, w, None, None, None, 2)
    gx, gw, gb = np.full_like(x, np.nan), np.full(c, np.nan, dtype), np.full(c, np.nan, dtype)
    k.backward(gy, x, _empty(dtype) if w is None else w, mean, invstd, gx, gw, gb, 2)
    gx_ref, gw_ref, gb_ref = ref.batch_norm_backward(gy, x, w)
    assert_close(gx, gx_ref, dtype, what="grad input")
    assert_close(gw, gw_ref, dtype, what="grad weight")
    assert_close(gb, gb_ref, dtype, what="grad bias")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_eval(shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    w = rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c), rng.random(c) + 0.1
    gx, gw, gb = np.full_like(x, np.nan), np.full(c, np.nan, dtype), np.full(c, np.nan, dtype)
    k.backward_eval(gy, x, w, rm, 1 / np.sqrt(rv + 1e-5), gx, gw, gb, 2)
    gx_ref, gw_ref, gb_ref = ref.batch_norm_eval_backward(gy, x, rm, rv, w)
    assert_close(gx, gx_ref, dtype, what="grad input")
    assert_close(gw, gw_ref, dtype, what="grad weight")
    assert_close(gb, gb_ref, dtype, what="grad bias")


def test_backward_skips_unrequested_outputs(rng):
    x = rng.standard_normal((2, 3, 10))
    gy = rng.standard_normal(x.shape)
    _, mean, invstd = _train(x, None, None, None, None, 1)
    gx = np.full_like(x, np.nan)
    k.backward(gy, x, _empty(np.float64), mean, invstd, gx, _empty(np.float64),
               _empty(np.float64), 2)
    assert_close(gx, ref.batch_norm_backward(gy, x)[0], np.float64)
    gb = np.full(3, np.nan)
    k.backward(gy, x, _empty(np.float64), mean, invstd, np.empty((0, 0, 0)),
               _empty(np.float64), gb, 2)
    assert_close(gb, gy.sum(axis=(0, 2)), np.float64)


@pytest.mark.parametrize("shape", [(8, 4, 1024), (2, 3, 5000), (64, 2, 16)])
def test_large_mean_float32_variance(shape, rng):
    """mean 1e4, std 1 in float32: naive E[x^2] - E[x]^2 in float32 loses every digit."""
    x = (rng.standard_normal(shape) + 1e4).astype(np.float32)
    mean_ref, var_ref = ref.batch_norm_stats(x)
    rv = np.ones(shape[1], np.float32)
    y, mean, invstd = _train(x, None, None, None, rv, 2, eps=0.0, momentum=1.0)
    np.testing.assert_allclose(1 / invstd ** 2, var_ref, rtol=1e-6)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12)
    n = shape[0] * shape[2]
    np.testing.assert_allclose(rv, var_ref * n / (n - 1), rtol=1e-6)
    # the output is as good as float32 input at 1e4 allows (ulp(1e4) ~ 1e-3)
    y_ref = ref.batch_norm_train(x.astype(np.float64), eps=0.0)[0]
    assert np.abs(y - y_ref).max() < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(16, 3, 300), (3, 16, 2100), (9, 1, 40), (12, 20, 64)])
def test_bit_identical_for_any_thread_count(shape, dtype, rng):
    x = (rng.standard_normal(shape) * 2 + 5).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    results = []
    for n_threads in (1, 2, 3, 4, 8):
        rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
        y, mean, invstd = _train(x, w, b, rm, rv, n_threads)
        gx, gw, gb = np.empty_like(x), np.empty(c, dtype), np.empty(c, dtype)
        k.backward(gy, x, w, mean, invstd, gx, gw, gb, n_threads)
        results.append((y, mean, invstd, rm, rv, gx, gw, gb))
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            np.testing.assert_array_equal(a, b_)


def test_nan_propagates_to_its_channel_only():
    x = np.ones((2, 3, 4), np.float32)
    x[:, 1] = np.arange(8, dtype=np.float32).reshape(2, 4)
    x[1, 1, 2] = np.nan
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    y, mean, invstd = _train(x, None, None, rm, rv, 2)
    assert np.isnan(y[:, 1]).all() and np.isnan(rm[1]) and np.isnan(rv[1])
    assert np.isfinite(y[:, [0, 2]]).all() and np.isfinite(rm[[0, 2]]).all()


def test_n1_training_uses_the_plane():
    """N = 1 with H*W > 1 is valid training input: statistics over the plane."""
    x = np.arange(6, dtype=np.float64).reshape(1, 1, 6)
    y, mean, invstd = _train(x, None, None, None, None, 2, eps=0.0)
    assert mean[0] == 2.5
    assert_close(y, (x - 2.5) / np.std(x), np.float64)


def test_empty_batch_is_a_no_op():
    x = np.empty((0, 3, 4), np.float32)
    rm = np.full(3, 7, np.float32)
    out = np.empty_like(x)
    k.forward_train(x, _empty(np.float32), _empty(np.float32), 1e-5, out, np.empty(3),
                    np.empty(3), rm, _empty(np.float32), 0.1, 2)
    assert (rm == 7).all()
    gw, gb = np.full(3, np.nan, np.float32), np.full(3, np.nan, np.float32)
    k.backward(x, x, _empty(np.float32), np.zeros(3), np.ones(3), np.empty((0, 0, 0),
               np.float32), gw, gb, 2)
    assert (gw == 0).all() and (gb == 0).all()


def _misaligned(shape, dtype, offset):
    """A NaN-filled C-contiguous array whose data start ``offset`` elements after a 64-byte
    boundary: the SIMD elementwise passes then store a masked head before the aligned body."""
    size = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    raw = np.full(size + 64, np.nan, dtype)
    start = (-raw.ctypes.data % 64) // itemsize + offset
    return raw[start:start + size].reshape(shape)


# L = 1 and 3 (planes shorter than a vector), N*C*L not a multiple of 16, planes of 17 and
# 1000 values (head, body and tail in one plane); C >= 8: by channel, C < 8: by plane at 2-3
# threads
ALIGN_SHAPES = [(5, 3, 1), (7, 9, 3), (3, 2, 17), (2, 11, 1000), (4, 1, 1000), (1, 3, 37)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ALIGN_SHAPES)
@pytest.mark.parametrize("offset", [0, 1, 5])
def test_outputs_at_any_alignment_and_thread_count(shape, dtype, offset, rng):
    """Forward (train and eval) and backward into outputs 0, 1 and 5 elements past a 64-byte
    boundary, from inputs at another offset, at 1, 2 and 3 threads: the same bits every time,
    and the reference."""
    x = (rng.standard_normal(shape) * 2 + 30).astype(dtype)
    gy = _misaligned(shape, dtype, 3)
    gy[...] = rng.standard_normal(shape)
    c = shape[1]
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.random(c).astype(dtype) + 0.5
    mean_e, invstd_e = rm.astype(np.float64), 1 / np.sqrt(rv.astype(np.float64) + 1e-5)
    results = []
    for n_threads in (1, 2, 3):
        y, mean, invstd = _misaligned(shape, dtype, offset), np.empty(c), np.empty(c)
        k.forward_train(x, w, b, 1e-5, y, mean, invstd, _empty(dtype), _empty(dtype), 0.1,
                        n_threads)
        gx, gw, gb = _misaligned(shape, dtype, offset), np.empty(c, dtype), np.empty(c, dtype)
        k.backward(gy, x, w, mean, invstd, gx, gw, gb, n_threads)
        ye = _misaligned(shape, dtype, offset)
        k.forward_eval(x, rm, rv, w, b, 1e-3, ye, n_threads)
        gxe = _misaligned(shape, dtype, offset)
        k.backward_eval(gy, x, w, mean_e, invstd_e, gxe, _empty(dtype), _empty(dtype),
                        n_threads)
        results.append((y, mean, invstd, gx, gw, gb, ye, gxe))
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            np.testing.assert_array_equal(a, b_)
    y, _, _, gx, gw, gb, ye, gxe = results[0]
    assert_close(y, ref.batch_norm_train(x, w, b)[0], dtype, what="out")
    gx_ref, gw_ref, gb_ref = ref.batch_norm_backward(gy, x, w)
    assert_close(gx, gx_ref, dtype, what="grad input")
    assert_close(gw, gw_ref, dtype, what="grad weight")
    assert_close(gb, gb_ref, dtype, what="grad bias")
    assert_close(ye, ref.batch_norm_eval(x, rm, rv, w, b, 1e-3), dtype, what="eval out")
    assert_close(gxe, ref.batch_norm_eval_backward(gy, x, rm, rv, w)[0], dtype,
                 what="eval grad input")


_SIMD_SCRIPT = r"""
import hashlib
import numpy as np
from fastconv._ext import batchnorm2d as k
print(k.simd_target())
rng = np.random.default_rng(3)
h = hashlib.sha256()
# runs, 32-value blocks and tails of the reductions; planes shorter than a vector
for shape in [(3, 5, 1000), (2, 3, 4100), (4, 2, 127), (5, 9, 256), (3, 9, 3), (2, 2, 21)]:
    x = (rng.standard_normal(shape) * 3 + 100).astype(np.float32)
    gy = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    y, mean, invstd = np.empty_like(x), np.empty(c), np.empty(c)
    k.forward_train(x, w, b, 1e-5, y, mean, invstd, rm, rv, 0.1, 2)
    # a gx 3 floats past its allocation: the masked head of the elementwise passes
    gx = np.empty(x.size + 3, np.float32)[3:].reshape(shape)
    gw, gb = np.empty(c, np.float32), np.empty(c, np.float32)
    k.backward(gy, x, w, mean, invstd, gx, gw, gb, 2)
    ye = np.empty_like(x)
    k.forward_eval(x, rm, rv, w, b, 1e-5, ye, 3)
    # the fused batch_norm + relu: forward, backward (mask recomputed from x), eval forward
    yr, rmean, rinv = np.empty_like(x), np.empty(c), np.empty(c)
    k.forward_train(x, w, b, 1e-5, yr, rmean, rinv, rm, rv, 0.1, 2, relu=True)
    gxr, gwr, gbr = np.empty_like(x), np.empty(c, np.float32), np.empty(c, np.float32)
    k.backward(gy, x, w, rmean, rinv, gxr, gwr, gbr, 2, bias=b, relu=True)
    yer = np.empty_like(x)
    k.forward_eval(x, rm, rv, w, b, 1e-5, yer, 3, relu=True)
    for a in (y, mean, invstd, rm, rv, gx, gw, gb, ye, yr, gxr, gwr, gbr, yer):
        h.update(a.tobytes())
print(h.hexdigest())
"""


def test_simd_paths_are_bit_identical_to_the_cython_loops():
    """Each float32 SIMD path (forced through FASTCONV_BN_TARGET in a fresh process, where it
    is read), reductions and elementwise passes, gives the same bits as the Cython loops
    ("generic")."""
    import os
    digests = {}
    for target in ("generic", "avx2", "avx512f"):
        env = dict(os.environ, FASTCONV_BN_TARGET=target)
        res = run_python(["-c", _SIMD_SCRIPT], env=env, timeout=300)
        assert res.returncode == 0, res.stderr
        active, digest = res.stdout.split()
        digests[active] = digest
    assert "generic" in digests
    assert len(set(digests.values())) == 1, digests


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 4), (64, 7, 16), (2, 300, 9), (4, 0, 3)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_swap01_regroups_exactly(dtype, shape, threads):
    """The (A, B, L) -> (B, A, L) copy used to regroup small planes channel-major."""
    x = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape) / 3
    out = np.full((shape[1], shape[0], shape[2]), np.nan, dtype)
    k.swap01(x, out, threads)
    np.testing.assert_array_equal(out, x.transpose(1, 0, 2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 3, 25), (16, 8, 33), (3, 9, 300), (5, 2, 600),
                                   (1, 5, 49), (2, 2, 1)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fused_relu_is_bit_identical_to_batch_norm_then_relu(shape, dtype, threads, rng):
    """forward_train / forward_eval with relu=True give relu's output of the plain kernel's,
    and backward with relu=True (gy masked where the recomputed normalised value is <= 0)
    the plain backward of relu's backward, bit for bit, for all three schedules (short
    planes image by image, by channel, split channels), with exact zeros, NaN and a missing
    weight or bias."""
    from fastconv._ext import activations as act
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 0, :2] = 0.0                   # constant inputs normalise to exactly the bias
    x[-1, -1, -1] = np.nan              # NaN passes relu forward and backward
    gy = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    for w, b in [(rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)),
                 (None, np.zeros(c, dtype)), (None, None)]:
        wk = _empty(dtype) if w is None else w
        bk = _empty(dtype) if b is None else b
        rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
        y, mean, invstd = _train(x, w, b, rm.copy(), rv.copy(), threads)
        r = np.empty_like(y)
        act.relu_forward(y.ravel(), r.ravel(), threads)
        yf, mf, sf = np.empty_like(x), np.empty(c), np.empty(c)
        rm2, rv2 = rm.copy(), rv.copy()
        k.forward_train(x, wk, bk, 1e-5, yf, mf, sf, rm2, rv2, 0.1, threads, relu=True)
        np.testing.assert_array_equal(yf, r)
        np.testing.assert_array_equal(mf, mean)
        gr = np.empty_like(gy)
        act.relu_backward(gy.ravel(), r.ravel(), gr.ravel(), threads)
        plain = [np.empty_like(x), np.empty(c, dtype), np.empty(c, dtype)]
        k.backward(gr, x, wk, mean, invstd, *plain, threads)
        fused = [np.full_like(x, 7), np.full(c, 7, dtype), np.full(c, 7, dtype)]
        k.backward(gy, x, wk, mean, invstd, *fused, threads, bias=bk, relu=True)
        for a, e in zip(fused, plain):
            np.testing.assert_array_equal(a, e)
        ye, yer = np.empty_like(x), np.empty_like(x)
        k.forward_eval(x, rm, rv + 1, wk, bk, 1e-5, ye, threads)
        k.forward_eval(x, rm, rv + 1, wk, bk, 1e-5, yer, threads, relu=True)
        np.testing.assert_array_equal(yer, np.where(ye < 0, 0, ye))


def test_fused_relu_backward_needs_the_bias(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    mean, invstd = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match="relu needs the forward's bias"):
        k.backward(x, x, _empty(np.float32), mean, invstd, np.empty_like(x),
                   np.empty(3, np.float32), np.empty(3, np.float32), 1, relu=True)
