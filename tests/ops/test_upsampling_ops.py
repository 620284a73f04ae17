"""interpolate / pixel_shuffle / pixel_unshuffle through the autograd tape: against the NumPy
reference, float64 gradcheck, odd layouts, thread counts and argument validation."""
import numpy as np
import pytest

import fastconv as fc
from fctest import assert_close
from fastconv.functional.upsampling import interpolate, pixel_shuffle, pixel_unshuffle
from fastconv.reference import upsample as ref

DTYPES = [np.float32, np.float64]


def _reference(x, mode, size, align_corners, sf):
    if mode == "nearest":
        return ref.upsample_nearest2d(x, size, sf)
    return ref.upsample_bilinear2d(x, size, align_corners, sf)


def _reference_grad(g, shape, mode, align_corners, sf):
    if mode == "nearest":
        return ref.upsample_nearest2d_backward(g, shape, sf)
    return ref.upsample_bilinear2d_backward(g, shape, align_corners, sf)


MODES = [("nearest", None), ("bilinear", False), ("bilinear", True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode,align_corners", MODES)
@pytest.mark.parametrize("kwargs", [{"scale_factor": 2}, {"scale_factor": (1.5, 0.7)},
                                    {"scale_factor": 3.0}, {"size": (7, 4)}, {"size": 9}])
def test_interpolate_matches_reference(kwargs, mode, align_corners, dtype, rng):
    x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
    xt = fc.Tensor(x, requires_grad=True)
    y = interpolate(xt, mode=mode, align_corners=align_corners, **kwargs)
    sf = kwargs.get("scale_factor")
    size = y.shape[2:]
    if "size" in kwargs:
        s = kwargs["size"]
        assert size == ((s, s) if isinstance(s, int) else s)
    else:
        pair = sf if isinstance(sf, tuple) else (sf, sf)
        assert size == (int(5 * pair[0]), int(6 * pair[1]))
    assert y.dtype == dtype
    assert_close(y.data, _reference(x, mode, size, bool(align_corners), sf), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    y.backward(g)
    assert_close(xt.grad, _reference_grad(g, x.shape, mode, bool(align_corners), sf), dtype)


@pytest.mark.parametrize("mode,align_corners", MODES)
@pytest.mark.parametrize("kwargs", [{"scale_factor": 2}, {"size": (3, 5)},
                                    {"scale_factor": 0.6}])
def test_interpolate_gradcheck(kwargs, mode, align_corners, rng):
    x = fc.Tensor(rng.standard_normal((1, 2, 4, 3)), requires_grad=True)
    assert fc.gradcheck(lambda t: interpolate(t, mode=mode, align_corners=align_corners,
                                              **kwargs), [x])


def test_recompute_scale_factor_uses_the_output_size(rng):
    x = rng.standard_normal((1, 1, 5, 5))
    a = interpolate(x, scale_factor=1.7, recompute_scale_factor=True).data
    b = interpolate(x, size=(8, 8)).data
    c = interpolate(x, scale_factor=1.7).data
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)   # PyTorch's 1 / scale_factor reads other pixels


@pytest.mark.parametrize("mode,align_corners", MODES)
def test_interpolate_odd_layouts_same_result(mode, align_corners, rng):
    base = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    expected = interpolate(base, scale_factor=2, mode=mode, align_corners=align_corners).data
    fortran = np.asfortranarray(base)
    strided = np.repeat(base, 2, axis=3)[..., ::2]
    readonly = base.copy()
    readonly.setflags(write=False)
    for x in (fortran, strided, readonly):
        y = interpolate(x, scale_factor=2, mode=mode, align_corners=align_corners)
        assert np.array_equal(y.data, expected)


@pytest.mark.parametrize("mode,align_corners", MODES)
def test_interpolate_thread_count_invariant(mode, align_corners, rng):
    x = fc.Tensor(rng.standard_normal((2, 3, 7, 5)).astype(np.float32), requires_grad=True)
    old = fc.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            fc.set_num_threads(n)
            x.grad = None
            y = interpolate(x, size=(11, 9), mode=mode, align_corners=align_corners)
            (y * y).sum().backward()
            results.append((y.data.copy(), x.grad.copy()))
    finally:
        fc.set_num_threads(old)
    for y, g in results[1:]:
        assert np.array_equal(y, results[0][0]) and np.array_equal(g, results[0][1])


def test_interpolate_empty_batch():
    y = interpolate(np.zeros((0, 3, 4, 4), np.float32), scale_factor=2, mode="bilinear")
    assert y.shape == (0, 3, 8, 8)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({}, ValueError, "exactly one of size or scale_factor"),
    ({"size": 4, "scale_factor": 2}, ValueError, "exactly one of size or scale_factor"),
    ({"size": 0}, ValueError, "expected a positive output size"),
    ({"scale_factor": 0.1}, ValueError, "expected a positive output size"),
    ({"scale_factor": -2}, ValueError, "expected positive finite scale_factor"),
    ({"scale_factor": "2"}, TypeError, "expected scale_factor to be a number"),
    ({"size": (2, 3, 4)}, TypeError, "expected size to be a number or a pair"),
    ({"size": 2.5}, TypeError, "expected size"),
    ({"scale_factor": 2, "mode": "bicubic"}, ValueError, "expected mode to be one of"),
    ({"scale_factor": 2, "align_corners": True}, ValueError, "align_corners can only be set"),
    ({"scale_factor": 2, "align_corners": False}, ValueError, "align_corners can only be set"),
    ({"scale_factor": 2, "mode": "bilinear", "align_corners": 1}, TypeError,
     "expected align_corners to be a bool"),
    ({"scale_factor": 2, "antialias": True}, ValueError, "expected antialias=False"),
    ({"size": 4, "recompute_scale_factor": True}, ValueError,
     "recompute_scale_factor is not meaningful"),
])
def test_interpolate_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        interpolate(np.zeros((1, 1, 4, 4), np.float32), **kwargs)


def test_interpolate_validation_of_input():
    with pytest.raises(ValueError, match="expected a 4-D input"):
        interpolate(np.zeros((1, 4, 4), np.float32), scale_factor=2)
    with pytest.raises(TypeError, match="expected input to be float32 or float64, got int64"):
        interpolate(np.zeros((1, 1, 4, 4), np.int64), scale_factor=2)
    with pytest.raises(ValueError, match="expected a non-empty spatial size"):
        interpolate(np.zeros((1, 1, 0, 4), np.float32), size=3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,r", [((2, 8, 3, 5), 2), ((9, 2, 2), 3), ((2, 3, 4, 2, 2), 1),
                                     ((2, 2, 4, 1, 1), 2)])
def test_pixel_shuffle_matches_reference_and_inverts(shape, r, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    xt = fc.Tensor(x, requires_grad=True)
    y = pixel_shuffle(xt, r)
    assert np.array_equal(y.data, ref.pixel_shuffle(x, r))
    g = rng.standard_normal(y.shape).astype(dtype)
    y.backward(g)
    assert np.array_equal(xt.grad, ref.pixel_unshuffle(g, r))
    assert np.array_equal(pixel_unshuffle(y.data, r).data, x)


def test_pixel_shuffle_gradcheck(rng):
    x = fc.Tensor(rng.standard_normal((1, 8, 2, 3)), requires_grad=True)
    assert fc.gradcheck(lambda t: pixel_shuffle(t, 2), [x])
    z = fc.Tensor(rng.standard_normal((1, 2, 4, 6)), requires_grad=True)
    assert fc.gradcheck(lambda t: pixel_unshuffle(t, 2), [z])


def test_pixel_shuffle_odd_layouts(rng):
    base = rng.standard_normal((2, 8, 4, 6)).astype(np.float32)
    expected = pixel_shuffle(base, 2).data
    ro = base.copy()
    ro.setflags(write=False)
    for x in (np.asfortranarray(base), base.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2),
              ro, np.broadcast_to(base, base.shape)):
        assert np.array_equal(pixel_shuffle(x, 2).data, expected)


def test_pixel_shuffle_empty_batch():
    assert pixel_shuffle(np.zeros((0, 8, 2, 2), np.float32), 2).shape == (0, 2, 4, 4)
    assert pixel_unshuffle(np.zeros((0, 2, 4, 4), np.float32), 2).shape == (0, 8, 2, 2)


def test_pixel_shuffle_validation():
    with pytest.raises(ValueError, match=r"divisible by upscale_factor\^2 = 4"):
        pixel_shuffle(np.zeros((1, 6, 2, 2), np.float32), 2)
    with pytest.raises(ValueError, match="at least 3 dims"):
        pixel_shuffle(np.zeros((4, 2), np.float32), 2)
    with pytest.raises(ValueError, match="expected upscale_factor to be positive"):
        pixel_shuffle(np.zeros((1, 4, 2, 2), np.float32), 0)
    with pytest.raises(TypeError, match="expected upscale_factor to be an int"):
        pixel_shuffle(np.zeros((1, 4, 2, 2), np.float32), 2.0)
    with pytest.raises(ValueError, match=r"height and width divisible by downscale_factor \(2\)"):
        pixel_unshuffle(np.zeros((1, 1, 4, 5), np.float32), 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        pixel_unshuffle(np.zeros((1, 1, 4, 4), np.int32), 2)
