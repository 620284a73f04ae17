"""fastconv._ext.upsample against fastconv.reference.upsample: nearest and bilinear resize
(forward and backward) over dtypes, sizes, integer and non-integer scales (up and down), both
align_corners; pixel_shuffle / pixel_unshuffle; bit-identity across thread counts."""
import math

import numpy as np
import pytest

from fctest import assert_close
from fastconv._ext import upsample as K
from fastconv.reference import upsample as ref

DTYPES = [np.float32, np.float64]

# (N, C, H, W), then either ("size", (OH, OW)) or ("scale", (sh, sw))
CASES = [
    ((2, 3, 5, 7), ("scale", (2, 2))),
    ((1, 2, 4, 6), ("scale", (3, 3))),
    ((2, 2, 6, 5), ("scale", (1.5, 1.5))),
    ((1, 3, 10, 9), ("scale", (0.7, 0.7))),       # downsampling
    ((2, 1, 7, 8), ("scale", (2.5, 0.5))),        # up along H, down along W
    ((1, 1, 9, 9), ("scale", (1, 1))),            # identity
    ((1, 2, 1, 1), ("scale", (4, 3))),            # 1x1 input
    ((2, 3, 5, 7), ("size", (10, 14))),
    ((1, 2, 5, 7), ("size", (3, 4))),
    ((1, 1, 6, 4), ("size", (13, 1))),            # single output column
    ((3, 2, 4, 4), ("size", (1, 1))),
    ((1, 1, 3, 8), ("size", (3, 8))),
]


def _geometry(shape, spec):
    kind, v = spec
    if kind == "size":
        return v, None, (0.0, 0.0)
    size = (math.floor(shape[2] * v[0]), math.floor(shape[3] * v[1]))
    return size, v, (float(v[0]), float(v[1]))


def _run(kind, x, size, scales, align_corners=False, n_threads=2, backward=False, g=None):
    if not backward:
        out = np.empty(x.shape[:2] + tuple(size), dtype=x.dtype)
        if kind == "nearest":
            K.nearest_forward(x, out, *scales, n_threads)
        else:
            K.bilinear_forward(x, out, align_corners, *scales, n_threads)
        return out
    gx = np.full(x.shape, np.nan, dtype=x.dtype)     # OUT must be fully overwritten
    if kind == "nearest":
        K.nearest_backward(g, gx, *scales, n_threads)
    else:
        K.bilinear_backward(g, gx, align_corners, *scales, n_threads)
    return gx


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,spec", CASES)
def test_nearest_matches_reference(shape, spec, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    size, sf, scales = _geometry(shape, spec)
    y = _run("nearest", x, size, scales)
    assert_close(y, ref.upsample_nearest2d(x, size, sf), dtype, what="nearest forward")
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = _run("nearest", x, size, scales, backward=True, g=g)
    assert_close(gx, ref.upsample_nearest2d_backward(g, x.shape, sf), dtype,
                 what="nearest backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape,spec", CASES)
def test_bilinear_matches_reference(shape, spec, align_corners, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    size, sf, scales = _geometry(shape, spec)
    y = _run("bilinear", x, size, scales, align_corners)
    assert_close(y, ref.upsample_bilinear2d(x, size, align_corners, sf), dtype,
                 what="bilinear forward")
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = _run("bilinear", x, size, scales, align_corners, backward=True, g=g)
    assert_close(gx, ref.upsample_bilinear2d_backward(g, x.shape, align_corners, sf), dtype,
                 what="bilinear backward")


def test_nearest_scale_factor_changes_the_source_index():
    # 5 * 1.7 -> 8 outputs; PyTorch reads src = floor(o / 1.7), not floor(o * 5 / 8)
    x = np.arange(5, dtype=np.float32).reshape(1, 1, 1, 5)
    y_scale = _run("nearest", x, (1, 8), (1.0, 1.7))
    y_size = _run("nearest", x, (1, 8), (0.0, 0.0))
    assert y_scale.ravel().tolist() == [0, 0, 1, 1, 2, 2, 3, 4]
    assert y_size.ravel().tolist() == [0, 0, 1, 1, 2, 3, 3, 4]


@pytest.mark.parametrize("kind", ["nearest", "bilinear"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_gives_identical_bits(kind, dtype, rng):
    x = rng.standard_normal((3, 5, 9, 11)).astype(dtype)
    size, scales = (20, 13), (0.0, 0.0)
    outs = [_run(kind, x, size, scales, True, n) for n in (1, 2, 3, 7)]
    g = rng.standard_normal(outs[0].shape).astype(dtype)
    grads = [_run(kind, x, size, scales, True, n, backward=True, g=g) for n in (1, 2, 3, 7)]
    for o, gx in zip(outs[1:], grads[1:]):
        assert np.array_equal(o, outs[0])
        assert np.array_equal(gx, grads[0])


@pytest.mark.parametrize("kind", ["nearest", "bilinear"])
def test_empty_batch_and_channels(kind):
    for shape in [(0, 3, 4, 4), (2, 0, 4, 4)]:
        x = np.zeros(shape, np.float32)
        assert _run(kind, x, (8, 8), (2.0, 2.0)).shape == shape[:2] + (8, 8)
        g = np.zeros(shape[:2] + (8, 8), np.float32)
        assert _run(kind, x, (8, 8), (2.0, 2.0), backward=True, g=g).shape == shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,r", [((2, 12, 5, 7), 2), ((1, 9, 4, 3), 3), ((2, 3, 4, 4), 1),
                                     ((1, 16, 1, 1), 4)])
def test_pixel_shuffle_and_unshuffle_match_reference(shape, r, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    n, c, h, w = shape
    y = np.full((n, c // (r * r), h * r, w * r), np.nan, dtype)
    K.pixel_shuffle(x, y, r, 2)
    assert np.array_equal(y, ref.pixel_shuffle(x, r))
    back = np.full(shape, np.nan, dtype)
    K.pixel_unshuffle(y, back, r, 2)
    assert np.array_equal(back, x)
    assert np.array_equal(back, ref.pixel_unshuffle(y, r))
