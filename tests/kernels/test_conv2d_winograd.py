"""fastconv._ext.conv2d_winograd: Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions.

Each pass is checked against the NumPy reference and against conv2d_im2col on the same
inputs, over the geometries on both sides of every switch in the kernel: the batch-parallel
path (N >= threads, chunks of images packed per thread) and the shared one (N < threads);
blocks of 48 tiles whose vectors cross tile rows and images; more than FC_WN_KC = 64
output channels; odd output sizes (tiles cut at the edge); rows wider than one vector of
tiles; padding 0 to 3, asymmetric. Also: the portable path (FASTCONV_SIMD_TARGET=generic)
against the same oracles, results bit for bit the same for any thread count, and NaN or
infinity in the input, grad_out or weights giving exactly conv2d_im2col's results. The weight
gradient is Winograd's own for float32 on AVX-512 or AVX2 (fixed groups of images: one group
when N = 1, eight for the 9-image case), conv2d_im2col's otherwise. The AVX2 and portable
paths are also forced on their own (FASTCONV_SIMD_TARGET), so a CPU with AVX-512 tests them
too, and there the AVX2 path's results must equal the AVX-512 path's bit for bit.
"""
import os

import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F
from fastconv._ext import conv2d_im2col as K
from fastconv._ext import conv2d_winograd as W
from fastconv.reference import conv as R
from fctest import assert_close, conv_passes, run_on_simd_target

# (N, C_in, H, W, C_out, (pad_h, pad_w))
CASES = [
    (2, 3, 9, 8, 4, (1, 1)),        # odd height: the last tile row is cut
    (1, 5, 7, 7, 6, (0, 0)),        # N = 1 < threads: the shared path
    (3, 16, 8, 8, 8, (1, 1)),       # 8x8: vectors of 16 tiles span 4 tile rows
    (2, 8, 5, 6, 9, (2, 2)),
    (1, 4, 3, 3, 5, (0, 0)),        # a 1x1 output
    (2, 17, 13, 11, 70, (1, 1)),    # > 64 output channels (two slices), not a multiple of 8
    (9, 24, 8, 8, 24, (1, 1)),      # several images per chunk, chunks over the threads
    (3, 8, 40, 37, 8, (1, 0)),      # 20 tiles a row: more than one vector; asymmetric padding
    (2, 4, 4, 4, 3, (3, 3)),        # padding larger than the kernel
    (4, 1, 6, 6, 1, (1, 1)),        # one channel in and out
    (2, 64, 16, 16, 32, (1, 1)),    # a ResNet-like layer
]


def _arrays(case, dtype, rng):
    """x, weight, bias, grad_out and the kernels' geometry of a CASES or DILATED case."""
    n, c_in, h, w, c_out, p, *dilation = case
    d = dilation[0] if dilation else (1, 1)
    oh, ow = h + 2 * p[0] - 2 * d[0], w + 2 * p[1] - 2 * d[1]
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = rng.standard_normal((c_out, c_in, 3, 3)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    gy = rng.standard_normal((n, c_out, oh, ow)).astype(dtype)
    return x, wt, b, gy, (1, 1, *p, *d, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_matches_reference_and_im2col(case, dtype, rng):
    x, w, b, gy, geo = _arrays(case, dtype, rng)
    p = geo[2:4]
    want = (R.conv2d(x, w, b, 1, p, 1, 1), R.conv2d_backward_input(gy, w, x.shape, 1, p, 1, 1),
            R.conv2d_backward_weight(x, gy, w.shape, 1, p, 1, 1))
    got = conv_passes(W, x, w, b, gy, geo, 2)
    other = conv_passes(K, x, w, b, gy, geo, 2)
    for name, a, r, o in zip(("forward", "backward_input", "backward_weight"), got, want,
                             other):
        assert_close(a, r, what=name)
        assert_close(a, o, what=name + " vs conv2d_im2col")
    if dtype == np.float64 or not W.simd_available():   # the weight gradient is im2col's
        np.testing.assert_array_equal(got[2], other[2])


@pytest.mark.parametrize("case", CASES)
def test_bit_identical_for_any_thread_count(case, rng):
    x, w, b, gy, geo = _arrays(case, np.float32, rng)
    first = conv_passes(W, x, w, b, gy, geo, 1)
    for threads in (2, 3):
        for a, o in zip(first, conv_passes(W, x, w, b, gy, geo, threads)):
            np.testing.assert_array_equal(a, o)


def test_float32_error_stays_near_the_direct_sum(rng):
    """256 input channels of unit normals: the transforms add up to 9 terms, so the error
    grows a little over the direct sum's, and stays far inside the float32 tolerance."""
    x, w, b, gy, geo = _arrays((2, 256, 8, 8, 16, (1, 1)), np.float32, rng)
    y = np.empty(gy.shape, np.float32)
    W.forward(x, w, b, y, *geo, 2)
    want = R.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, 1)
    assert np.abs(y - want).max() <= 1e-5 * np.abs(want).max()


_FORCED_SCRIPT = """
import os, sys; sys.path[:0] = [sys.argv[1], os.path.dirname(sys.argv[1])]
import numpy as np, test_conv2d_winograd as t
from fastconv._ext import conv2d_winograd as W
assert W.simd_target() == sys.argv[2], W.simd_target()
assert W.simd_available() == (sys.argv[2] != 'generic')
for case in t.CASES:
    for dtype in (np.float32, np.float64):
        t.test_matches_reference_and_im2col(case, dtype, np.random.default_rng(0))
    t.test_bit_identical_for_any_thread_count(case, np.random.default_rng(0))
for where in ('x', 'gy', 'w'):
    for bad in (np.inf, -np.inf, np.nan):
        for n in (1, 4):
            for d in (1, 2):
                t.test_non_finite_values_give_im2col_results(where, bad, n, d,
                                                             np.random.default_rng(0))
for case in t.DILATED:
    t.test_dilation_runs_on_the_phases(case, np.float32, np.random.default_rng(0))
print('OK')
"""


@pytest.mark.parametrize("target", ["avx2", "generic"])
def test_lower_paths_match(target):
    """The AVX2 blocks, packing and weight gradient (those of a CPU with AVX2 but not
    AVX-512) and the portable C blocks, each forced in a fresh process: the oracles, the
    non-finite cases and thread-count invariance."""
    out = run_on_simd_target(target, ["-c", _FORCED_SCRIPT, os.path.dirname(__file__), target],
                             timeout=900)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"


_BITS_SCRIPT = """
import os, sys; sys.path[:0] = [sys.argv[1], os.path.dirname(sys.argv[1])]
import numpy as np, test_conv2d_winograd as t
from fastconv._ext import conv2d_winograd as W
from fctest import conv_passes
assert W.simd_target() == sys.argv[3], W.simd_target()
out = {}
for i, case in enumerate(t.CASES + t.DILATED):
    x, w, b, gy, geo = t._arrays(case, np.float32, np.random.default_rng(i))
    out.update(zip((f"y{i}", f"gx{i}", f"gw{i}"), conv_passes(W, x, w, b, gy, geo, 2)))
np.savez(sys.argv[2], **out)
print('OK')
"""


def test_avx2_and_avx512_paths_give_the_same_bits(tmp_path):
    """The AVX2 bodies run the AVX-512 ones' operations in the same order on every lane, so
    a CPU with AVX-512 and one with only AVX2 get the same results, bit for bit: all three
    passes of every case above, float32, each path forced in a fresh process."""
    got = {}
    for target in ("avx512f", "avx2"):
        path = str(tmp_path / f"{target}.npz")
        out = run_on_simd_target(target, ["-c", _BITS_SCRIPT, os.path.dirname(__file__), path,
                                          target])
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "OK"
        got[target] = np.load(path)
    assert got["avx512f"].files == got["avx2"].files
    for name in got["avx512f"].files:
        np.testing.assert_array_equal(got["avx512f"][name], got["avx2"][name], err_msg=name)


@pytest.mark.parametrize("where", ["x", "gy", "w"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("n", [1, 4])     # the shared and the batch-parallel paths
@pytest.mark.parametrize("d", [1, 2])     # dilated at n 4: image by image (run_phases)
def test_non_finite_values_give_im2col_results(where, bad, n, d, rng):
    """inf - inf inside a transform would turn a whole tile NaN where the direct sum gives
    inf: the passes that see such a value run conv2d_im2col, bit for bit."""
    x, w, b, gy, geo = _arrays((n, 8, 6, 8, 8, (d, d), (d, d)), np.float32, rng)
    {"x": x, "gy": gy, "w": w}[where][n - 1, 3, 2, 1] = bad
    got, want = conv_passes(W, x, w, b, gy, geo, 2), conv_passes(K, x, w, b, gy, geo, 2)
    sees = {"x": ("forward", "backward_weight"), "gy": ("backward_input", "backward_weight"),
            "w": ("forward", "backward_input")}[where]
    for name, a, o in zip(("forward", "backward_input", "backward_weight"), got, want):
        if name in sees:
            np.testing.assert_array_equal(a, o, err_msg=name)
        else:
            assert_close(a, o, what=name)


def test_empty_and_degenerate_shapes():
    f = np.float32
    geo = (1, 1, 1, 1, 1, 1, 1)
    y = np.empty((0, 4, 5, 5), f)
    W.forward(np.ones((0, 3, 5, 5), f), np.ones((4, 3, 3, 3), f), np.empty(0, f), y, *geo, 2)
    y = np.full((2, 4, 5, 5), np.nan, f)                   # no input channels: y = bias
    W.forward(np.ones((2, 0, 5, 5), f), np.ones((4, 0, 3, 3), f), np.arange(4, dtype=f), y,
              *geo, 2)
    np.testing.assert_array_equal(y, np.broadcast_to(np.arange(4, dtype=f)[:, None, None],
                                                     y.shape))
    gx = np.full((2, 3, 5, 5), np.nan, f)                  # no output channels: gx = 0
    W.backward_input(np.ones((2, 0, 5, 5), f), np.ones((0, 3, 3, 3), f), gx, *geo, 2)
    np.testing.assert_array_equal(gx, 0)
    # an empty image under padding 2: every window sees only zeros
    x0, w0, b0 = np.ones((2, 3, 0, 4), f), np.ones((4, 3, 3, 3), f), np.arange(4, dtype=f)
    xt, wt = fc.Tensor(x0, requires_grad=True), fc.Tensor(w0, requires_grad=True)
    y = F.conv2d(xt, wt, b0, padding=2, algorithm="winograd")
    assert y.shape == (2, 4, 2, 6)
    np.testing.assert_array_equal(y.data, np.broadcast_to(b0[:, None, None], y.shape))
    y.backward(np.ones(y.shape, f))
    assert xt.grad.shape == x0.shape
    np.testing.assert_array_equal(wt.grad, 0)


def test_rejects_what_it_does_not_compute():
    f = np.float32
    x, y = np.ones((1, 2, 6, 6), f), np.empty((1, 2, 3, 3), f)
    with pytest.raises(ValueError, match="expected a 3x3 kernel, stride 1"):
        W.forward(x, np.ones((2, 2, 3, 3), f), np.empty(0, f), y, 2, 2, 1, 1, 1, 1, 1, 2)
    with pytest.raises(ValueError, match="got kernel 5x5"):
        W.backward_weight(x, np.ones((1, 2, 2, 2), f), np.empty((2, 2, 5, 5), f), 1, 1, 0, 0,
                          1, 1, 1, 2)


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_public_ops_and_float64_gradients(padding, rng):
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    inputs = [fc.Tensor(a, requires_grad=True) for a in (x, w, b)]
    assert fc.gradcheck(lambda x_, w_, b_: F.conv2d(x_, w_, b_, 1, padding,
                                                    algorithm="winograd"), inputs)
    wt = rng.standard_normal((3, 4, 3, 3))                 # conv_transpose2d: (C_in, C_out)
    got = F.conv_transpose2d(x.astype(np.float32), wt.astype(np.float32), None, 1, padding,
                             algorithm="winograd").data
    assert_close(got, R.conv_transpose2d(x, wt, None, 1, padding), np.float32)
    inputs = [fc.Tensor(a, requires_grad=True) for a in (x, wt)]
    assert fc.gradcheck(lambda x_, w_: F.conv_transpose2d(x_, w_, None, 1, padding,
                                                          algorithm="winograd"), inputs)


# at 1, 2 and 3 threads, batches 1-3 run both dilated paths: image by image (run_phases:
# the batch a multiple of the threads) and the whole batch split into phase images first
DILATED = [
    (2, 5, 8, 6, 7, (2, 2), (2, 2)),       # the dilated layer of the bench, small
    (1, 4, 9, 8, 3, (3, 2), (3, 2)),       # different dilations per axis
    (3, 8, 12, 12, 8, (0, 0), (2, 2)),     # no padding
    (2, 3, 8, 8, 4, (4, 2), (2, 1)),       # dilation along one axis only
    (2, 3, 6, 38, 4, (2, 2), (2, 2)),      # phases 19 wide: two SIMD blocks and a tail
    (2, 64, 40, 40, 8, (2, 2), (2, 2)),    # 3 phases of 64x20x20 fill a chunk: 2 an image
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", DILATED)
def test_dilation_runs_on_the_phases(case, dtype, rng):
    """A dilation dividing the input size and the padding: the reference and im2col for all
    three passes, bit for bit the same for any thread count (and so for either path)."""
    p, d = case[5:]
    x, wt, b, gy, geo = _arrays(case, dtype, rng)
    want = (R.conv2d(x, wt, b, 1, p, d, 1), R.conv2d_backward_input(gy, wt, x.shape, 1, p, d, 1),
            R.conv2d_backward_weight(x, gy, wt.shape, 1, p, d, 1))
    got = [conv_passes(W, x, wt, b, gy, geo, t) for t in (1, 2, 3)]
    for name, a, r, o in zip(("forward", "backward_input", "backward_weight"), got[0], want,
                             conv_passes(K, x, wt, b, gy, geo, 2)):
        assert_close(a, r, what=name)
        assert_close(a, o, what=name + " vs conv2d_im2col")
    for other in got[1:]:
        for a, o in zip(got[0], other):
            np.testing.assert_array_equal(a, o)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [(2, 2), (3, 2), (2, 1), (1, 3)])
@pytest.mark.parametrize("ws", [1, 7, 8, 9, 17, 24])
def test_split_and_merge_are_the_phase_slices(ws, d, dtype, rng):
    """_split gives image (n*dh + r)*dw + s = x[n, :, r::dh, s::dw] (the SIMD rows of dw 2
    included: full vectors, tails, widths under one vector) and _merge puts them back."""
    dh, dw = d
    x = rng.standard_normal((2, 3, 3 * dh, ws * dw)).astype(dtype)
    want = np.stack([x[n, :, r::dh, s::dw] for n in range(2) for r in range(dh)
                     for s in range(dw)])
    for t in (1, 2):
        got = W._split(x, dh, dw, t)
        np.testing.assert_array_equal(got, want)
        back = np.full_like(x, np.nan)
        W._merge(got, back, dh, dw, t)
        np.testing.assert_array_equal(back, x)


def test_dilation_must_divide_size_and_padding():
    f = np.float32
    x, w = np.ones((1, 2, 7, 8), f), np.ones((2, 2, 3, 3), f)
    with pytest.raises(ValueError, match="input 7x8, padding"):
        W.forward(x, w, np.empty(0, f), np.empty((1, 2, 7, 8), f), 1, 1, 2, 2, 2, 2, 1, 2)
    assert not W.supports(3, 3, 1, 1, 2, 2, 1, 8, 8, 1, 1)      # padding 1, dilation 2
    assert W.supports(3, 3, 1, 1, 2, 2, 1, 8, 8, 2, 2)


@pytest.mark.parametrize("hw, output_padding", [((8, 5), (0, 1)), ((7, 5), (1, 1))])
def test_dilated_transposed_with_output_padding(hw, output_padding, rng):
    """conv_transpose2d with dilation 2 and output_padding: the input gradient's output and
    grad_out of the kernels are not multiples of the dilation (found by the fuzzer)."""
    x = rng.standard_normal((3, 4, *hw))
    wt = rng.standard_normal((4, 4, 3, 3))
    gy_shape = R.conv_transpose2d(x, wt, None, 1, 2, output_padding, 1, 2).shape
    gy = rng.standard_normal(gy_shape)
    for dtype in (np.float64, np.float32):
        xt = fc.Tensor(x.astype(dtype), requires_grad=True)
        wtt = fc.Tensor(wt.astype(dtype), requires_grad=True)
        y = F.conv_transpose2d(xt, wtt, None, 1, 2, output_padding, 1, 2, algorithm="winograd")
        y.backward(gy.astype(dtype))
        args = (1, 2, output_padding, 1, 2)
        assert_close(y.data, R.conv_transpose2d(x, wt, None, *args), dtype)
        assert_close(xt.grad, R.conv_transpose2d_backward_input(gy, wt, x.shape, *args), dtype)
        assert_close(wtt.grad, R.conv_transpose2d_backward_weight(x, gy, wt.shape, *args),
                     dtype)
