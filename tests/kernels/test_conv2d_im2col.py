"""fastconv._ext.conv2d_im2col's row-offset form (stride 1: padded image, padded-width grid).

The kernel picks it by itself for stride-1 layers with little junk (src/_padded.pxd): forward
in chunks of images, backward_input as the forward convolution of grad_out with the flipped
kernel, backward_weight as one GEMM over a chunk's pixels; forward with at most 32 output
channels per group runs the no-pack kernel of conv_rowoff.h (AVX-512 or AVX2) instead of
the GEMM, and (AVX-512, at least 1 junk column in 5) computes only the real columns
(fc_rowruns_forward_f32: each vector's reads gathered from a window of 32 floats). Each pass
is checked against the NumPy reference and against conv2d_direct (the other general algorithm) on the same inputs,
with the geometries on both sides of every switch: junk share (up to 2 junk columns per
output column), backward_input's flipped form (cin_g >= 4 and up to 1 junk column per real
one with the no-pack kernel, else cin_g >= 8 and 25%), padding > dilation*(k-1), non-finite
inputs for backward_weight, and its
dot-product form (AVX-512, <= 32 channels per group) against its GEMM form.
"""
import os

import numpy as np
import pytest

from fastconv._ext import conv2d_direct as D
from fastconv._ext import conv2d_im2col as K
from fastconv.reference import conv as R
from fctest import assert_close, conv_passes, run_on_simd_target

# (N, C_in, H, W, C_out, kh, kw, padding, dilation, groups)
CASES = [
    (3, 16, 14, 14, 8, 3, 3, (1, 1), (1, 1), 1),     # padded form, 3 images per chunk
    (2, 8, 8, 8, 12, 3, 3, (1, 1), (1, 1), 1),       # 8x8: 25% junk, still the padded form
    (5, 16, 9, 11, 16, 3, 3, (2, 2), (2, 2), 2),     # dilation, groups, odd sizes
    (2, 9, 12, 7, 6, 2, 4, (0, 3), (1, 1), 3),       # asymmetric kernel and padding
    (4, 1, 28, 28, 6, 5, 5, (2, 2), (1, 1), 1),      # lenet_c1: C_in = 1
    (3, 6, 14, 14, 16, 5, 5, (0, 0), (1, 1), 1),     # lenet_c2: 40% junk, real columns only
    (3, 6, 7, 9, 10, 3, 3, (0, 0), (1, 1), 1),       # real columns: vectors over 3 rows
    (2, 4, 12, 16, 8, 9, 9, (0, 0), (1, 1), 1),      # real columns: a 32-float window
    (2, 4, 12, 17, 8, 10, 10, (0, 0), (1, 1), 1),    # a 33-float window: padded form
    (3, 16, 8, 8, 12, 5, 5, (0, 0), (1, 1), 1),      # 100% junk: padded (backward_input not)
    (2, 8, 9, 9, 8, 7, 7, (0, 0), (1, 1), 1),        # 200% junk: the limit, padded
    (2, 8, 10, 3, 8, 3, 3, (0, 0), (1, 1), 1),       # 1 output column per 3: padded
    (2, 8, 6, 9, 8, 5, 5, (0, 0), (1, 1), 1),        # 4 junk per 5 columns: padded
    (2, 8, 5, 9, 8, 3, 8, (0, 0), (1, 1), 1),        # 7 junk per 2 columns: general path
    (2, 8, 6, 6, 8, 3, 3, (4, 4), (1, 1), 1),        # padding > dilation*(k-1)
    (1, 24, 5, 5, 32, 3, 3, (1, 1), (1, 1), 1),      # N = 1 < threads: parallel GEMM
    (17, 8, 4, 4, 8, 3, 3, (1, 1), (1, 1), 1),       # many small images: several chunks
    (2, 8, 10, 10, 40, 3, 3, (1, 1), (1, 1), 1),     # > 32 channels: the GEMM weight grad
    (3, 8, 12, 12, 20, 3, 3, (1, 1), (1, 1), 1),     # no-pack forward: rows 8+8+4, 168 columns
    (1, 12, 9, 9, 12, 3, 3, (1, 1), (1, 1), 2),      # N = 1: its column blocks over threads
    (2, 64, 6, 6, 66, 3, 3, (1, 1), (1, 1), 2),      # 33 per group: the GEMM weight grad
    (3, 4, 2, 2, 8, 3, 3, (1, 1), (1, 1), 1),        # backward_input flipped, 100% junk, C_in 4
    (2, 5, 3, 3, 7, 3, 3, (1, 1), (1, 1), 1),        # 67% junk, C_in 5
    (2, 3, 6, 6, 8, 3, 3, (1, 1), (1, 1), 1),        # C_in 3: backward_input's col2im path
    (2, 40, 6, 6, 8, 3, 3, (1, 1), (1, 1), 1),       # C_in 40: GEMM flipped form, 25% junk max
    (2, 3, 45, 37, 40, 3, 3, (1, 1), (1, 1), 1),     # one image a GEMM: bias in row blocks
]

def _arrays(case, dtype, rng):
    n, c_in, h, w, c_out, kh, kw, p, d, g = case
    oh, ow = h + 2 * p[0] - d[0] * (kh - 1), w + 2 * p[1] - d[1] * (kw - 1)
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = rng.standard_normal((c_out, c_in // g, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    gy = rng.standard_normal((n, c_out, oh, ow)).astype(dtype)
    return x, wt, b, gy, (1, 1, *p, *d, g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_matches_reference_and_direct(case, dtype, rng):
    x, w, b, gy, geo = _arrays(case, dtype, rng)
    p, d, g = geo[2:4], geo[4:6], geo[6]
    want = (R.conv2d(x, w, b, 1, p, d, g),
            R.conv2d_backward_input(gy, w, x.shape, 1, p, d, g),
            R.conv2d_backward_weight(x, gy, w.shape, 1, p, d, g))
    got = conv_passes(K, x, w, b, gy, geo, 2)
    direct = conv_passes(D, x, w, b, gy, geo, 2)
    for name, a, r, o in zip(("forward", "backward_input", "backward_weight"), got, want,
                             direct):
        assert_close(a, r, what=name)
        assert_close(a, o, what=name + " vs conv2d_direct")


@pytest.mark.parametrize("case", CASES)
def test_bit_identical_for_any_thread_count(case, rng):
    x, w, b, gy, geo = _arrays(case, np.float32, rng)
    first = conv_passes(K, x, w, b, gy, geo, 1)
    for threads in (2, 3, 4):
        for a, o in zip(first, conv_passes(K, x, w, b, gy, geo, threads)):
            np.testing.assert_array_equal(a, o)


@pytest.mark.parametrize("case", CASES)
def test_bits_do_not_depend_on_the_batch(case, rng):
    """An image's output and input gradient are summed the same way whatever chunk of images
    they are computed in (the real-column form puts a chunk's images side by side)."""
    x, w, b, gy, geo = _arrays(case, np.float32, rng)
    whole = conv_passes(K, x, w, b, gy, geo, 2)[:2]
    for i in range(x.shape[0]):
        one = conv_passes(K, x[i:i + 1], w, b, gy[i:i + 1], geo, 2)[:2]
        for a, o in zip(one, whole):
            np.testing.assert_array_equal(a[0], o[i])


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_backward_weight_with_non_finite_input_matches_reference(bad, rng):
    """The padded form's junk columns multiply zeros by real pixels; a non-finite pixel that
    only junk columns see would turn 0 * inf into NaN, so such inputs take the general path.
    Column W-1 is seen by the junk of tap j = 0 and by no real column of it."""
    x, w, b, gy, geo = _arrays((2, 8, 8, 8, 4, 3, 3, (1, 1), (1, 1), 1), np.float32, rng)
    x[1, 3, 4, 7] = bad
    gw = np.empty_like(w)
    K.backward_weight(x, gy, gw, *geo, 2)
    want = R.conv2d_backward_weight(x, gy, w.shape, 1, 1, 1, 1)
    np.testing.assert_array_equal(np.isnan(gw), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(gw), np.isinf(want))
    finite = np.isfinite(want)
    assert finite.any()
    assert_close(gw[finite], want[finite], what="finite entries")


@pytest.mark.parametrize("target", ["avx2", "generic"])
def test_lower_simd_paths(target):
    """Forced lower paths: AVX2 runs the AVX2 bodies of the no-pack forward (conv_rowoff.h)
    and of the weight gradient's dot form (wgrad_dot.h, for short reductions), the GEMM form
    elsewhere; the portable build of every kernel uses the GEMM forms throughout. Each: the
    oracles, and the same bits for any thread count."""
    script = (
        "import os, sys; sys.path[:0] = [sys.argv[1], os.path.dirname(sys.argv[1])]\n"
        "import numpy as np, test_conv2d_im2col as t\n"
        "from fastconv._ext import gemm\n"
        "assert gemm.simd_targets()[1] == sys.argv[2], gemm.simd_targets()\n"
        "for case in t.CASES:\n"
        "    for dtype in (np.float32, np.float64):\n"
        "        t.test_matches_reference_and_direct(case, dtype, np.random.default_rng(0))\n"
        "    t.test_bit_identical_for_any_thread_count(case, np.random.default_rng(0))\n"
        "print('OK')\n")
    out = run_on_simd_target(target, ["-c", script, os.path.dirname(__file__), target])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"


@pytest.mark.parametrize("k, d", [(2, 1), (4, 1), (2, 3), (4, 3)])
def test_output_larger_than_the_symmetric_padding_gives(k, d, rng):
    """padding='same' with an odd d*(k-1) pads one pixel more at the bottom and right: the
    kernels get padding (d*(k-1)) // 2 and an output one larger than that padding gives. The
    padded planes must grow to hold it (they read zeros there, not the next row)."""
    p = d * (k - 1) // 2
    x, w, b, _, _ = _arrays((2, 8, 9, 11, 8, k, k, (p, p), (d, d), 1), np.float32, rng)
    oh, ow = x.shape[2], x.shape[3]                          # 'same'
    gy = rng.standard_normal((2, 8, oh, ow)).astype(np.float32)
    geo = (1, 1, p, p, d, d, 1)
    xpad = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)))          # the extra bottom/right pixel
    want = (R.conv2d(xpad, w, b, 1, p, d, 1),
            R.conv2d_backward_input(gy, w, xpad.shape, 1, p, d, 1)[:, :, :-1, :-1],
            R.conv2d_backward_weight(xpad, gy, w.shape, 1, p, d, 1))
    for a, r, name in zip(conv_passes(K, x, w, b, gy, geo, 2), want,
                          ("forward", "backward_input", "backward_weight")):
        assert_close(a, r, what=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    (19, 6, 9, 9, 10, 3, 3, 2, 1, 1),    # stride 2: the general form, 3 groups of images
    (17, 12, 5, 5, 8, 1, 1, 1, 0, 2),    # 1x1, 2 channel groups: x is the column matrix
    (8, 4, 7, 7, 6, 3, 3, 2, 1, 1),      # one group of images: each GEMM over the threads
])
def test_general_weight_gradient_in_image_groups(case, dtype, rng):
    """backward_weight's general form sums fixed groups of images into partial gradients
    in parallel: same result as the reference, bit for bit for any thread count."""
    n, c_in, h, w_, c_out, kh, kw, s, p, g = case
    x = rng.standard_normal((n, c_in, h, w_)).astype(dtype)
    oh, ow = (h + 2 * p - kh) // s + 1, (w_ + 2 * p - kw) // s + 1
    gy = rng.standard_normal((n, c_out, oh, ow)).astype(dtype)
    shape = (c_out, c_in // g, kh, kw)
    results = []
    for threads in (1, 2, 3):
        gw = np.full(shape, np.nan, dtype)
        K.backward_weight(x, gy, gw, s, s, p, p, 1, 1, g, threads)
        results.append(gw)
    assert_close(results[0], R.conv2d_backward_weight(x, gy, shape, s, p, 1, g))
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    (3, 4, 9, 11, 6, 3, 3, (1, 1), 1),       # odd sizes
    (2, 8, 8, 8, 40, 3, 3, (1, 1), 1),       # > 32 output channels: the GEMM
    (5, 6, 7, 10, 12, 2, 2, (0, 0), 2),      # 2x2 windows, groups
    (2, 3, 13, 6, 5, 5, 5, (2, 2), 1),       # 5x5
    (17, 8, 16, 16, 16, 3, 3, (1, 1), 1),    # several chunks of images
    (2, 4, 6, 7, 4, 4, 2, (1, 0), 1),        # even kernel, asymmetric padding
    (3, 6, 12, 12, 66, 3, 3, (1, 1), 3),     # 22 output channels per group
    (2, 2, 4, 4, 3, 3, 3, (2, 2), 1),        # padding larger than the image's half
    (2, 16, 5, 5, 8, 1, 1, (0, 0), 1),       # 1x1: the general path
    (2, 2, 1, 9, 3, 1, 3, (0, 0), 1),        # 1x3: the general path
    (2, 3, 90, 75, 40, 3, 3, (1, 1), 1),     # one image a GEMM: bias in row blocks
])
def test_stride2_phase_form(case, dtype, rng):
    """Stride 2 in the row-offset form over the image's 4 phase planes (forward and weight
    gradient; 1xk kernels stay on the general path): the reference, bit for bit for any
    thread count."""
    n, c_in, h, w_, c_out, kh, kw, p, g = case
    x = rng.standard_normal((n, c_in, h, w_)).astype(dtype)
    w = rng.standard_normal((c_out, c_in // g, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    oh, ow = (h + 2 * p[0] - kh) // 2 + 1, (w_ + 2 * p[1] - kw) // 2 + 1
    gy = rng.standard_normal((n, c_out, oh, ow)).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        y = np.full((n, c_out, oh, ow), np.nan, dtype)
        gw = np.full(w.shape, np.nan, dtype)
        K.forward(x, w, b, y, 2, 2, *p, 1, 1, g, threads)
        K.backward_weight(x, gy, gw, 2, 2, *p, 1, 1, g, threads)
        results.append((y, gw))
    assert_close(results[0][0], R.conv2d(x, w, b, 2, p, 1, g), what="forward")
    assert_close(results[0][1], R.conv2d_backward_weight(x, gy, w.shape, 2, p, 1, g),
                 what="backward_weight")
    for y, gw in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(gw, results[0][1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2])
def test_one_image_gemm_writes_the_output_planes(stride, dtype, rng):
    """An image too large to share a GEMM (> CHUNK_COLUMNS padded columns, > 32 output
    channels) skips the junk columns in B, so the GEMM writes the output planes straight
    (no bias: one GEMM; bias: blocks of rows, the bias added to each): both match the
    reference, the bias is added exactly as to the unbiased output, for any thread count."""
    n, c_in, h, w_, c_out = 2, 5, 70, 61, 36
    x = rng.standard_normal((n, c_in, h, w_)).astype(dtype)
    w = rng.standard_normal((c_out, c_in, 3, 3)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    oh, ow = (h - 1) // stride + 1, (w_ - 1) // stride + 1
    for threads in (1, 2, 3):
        y0, yb = (np.full((n, c_out, oh, ow), np.nan, dtype) for _ in range(2))
        K.forward(x, w, b[:0], y0, stride, stride, 1, 1, 1, 1, 1, threads)
        K.forward(x, w, b, yb, stride, stride, 1, 1, 1, 1, 1, threads)
        assert_close(y0, R.conv2d(x, w, None, stride, 1, 1, 1), what="forward, no bias")
        np.testing.assert_array_equal(yb, y0 + b[:, None, None])


def test_an_image_with_no_pixels_under_padding():
    """H = 0 with padding 2: every window sees only padding, so out = bias and the weight
    gradient is 0 (no pointer into the empty image: checked by the bounds-checked build)."""
    f = np.float32
    x, w, b = np.ones((2, 3, 0, 4), f), np.ones((4, 3, 3, 3), f), np.arange(4, dtype=f)
    y = np.full((2, 4, 2, 6), np.nan, f)
    K.forward(x, w, b, y, 1, 1, 2, 2, 1, 1, 1, 2)
    np.testing.assert_array_equal(y, np.broadcast_to(b[:, None, None], y.shape))
    gw = np.full_like(w, np.nan)
    K.backward_weight(x, np.ones_like(y), gw, 1, 1, 2, 2, 1, 1, 1, 2)
    np.testing.assert_array_equal(gw, 0)
    gx = np.full_like(x, np.nan)
    K.backward_input(np.ones_like(y), w, gx, 1, 1, 2, 2, 1, 1, 1, 2)
