"""Pooling through fastconv.functional.pooling and the tape: forward and gradients against
the NumPy reference, float64 finite differences, validation errors, odd layouts, unbatched
input, spatial pyramid pooling."""
import numpy as np
import pytest

import fastconv as fc
from fctest import assert_close
from fastconv.functional import pooling as P
from fastconv.reference import pool as ref


def _perm(rng, shape, dtype=np.float64):
    """Distinct values (no ties), so max pooling is differentiable at the sample."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) / 10.0).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("args", [dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=(2, 3), stride=(1, 2), dilation=2),
                                  dict(kernel_size=2, ceil_mode=True)])
def test_max_pool2d_matches_reference(args, dtype, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    xt = fc.Tensor(x, requires_grad=True)
    y, idx = P.max_pool2d(xt, return_indices=True, **args)
    ro, ri = ref.max_pool2d(x, args["kernel_size"], args.get("stride"), args.get("padding", 0),
                            args.get("dilation", 1), args.get("ceil_mode", False))
    assert np.array_equal(y.data, ro) and np.array_equal(idx, ri) and y.dtype == dtype
    gy = rng.standard_normal(y.shape).astype(dtype)
    y.backward(gy)
    assert_close(xt.grad, ref.max_pool2d_backward(gy, ri, x.shape), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("args", [dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                       count_include_pad=False),
                                  dict(kernel_size=2, divisor_override=3)])
def test_avg_pool2d_matches_reference(args, dtype, rng):
    x = rng.standard_normal((2, 3, 8, 7)).astype(dtype)
    xt = fc.Tensor(x, requires_grad=True)
    y = P.avg_pool2d(xt, **args)
    full = dict(stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None)
    full.update(args)
    kern = full.pop("kernel_size")
    assert_close(y.data, ref.avg_pool2d(x, kern, **full), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    y.backward(gy)
    assert_close(xt.grad, ref.avg_pool2d_backward(gy, x.shape, kern, **full), dtype)


GRADCHECKS = {
    "max": lambda t: P.max_pool2d(t, 3, 2, 1),
    "max_dilated_ceil": lambda t: P.max_pool2d(t, 2, 2, 1, 2, ceil_mode=True),
    "avg": lambda t: P.avg_pool2d(t, 3, 2, 1),
    "avg_ceil_nopad": lambda t: P.avg_pool2d(t, 3, 2, 1, True, False),
    "avg_override": lambda t: P.avg_pool2d(t, 2, 1, divisor_override=3),
    "adaptive_avg": lambda t: P.adaptive_avg_pool2d(t, (2, 4)),
    "global_avg": lambda t: P.adaptive_avg_pool2d(t, 1),
    "adaptive_max": lambda t: P.adaptive_max_pool2d(t, (3, None)),
    "lp2": lambda t: P.lp_pool2d(t, 2, 2, ceil_mode=True),
    "lp3": lambda t: P.lp_pool2d(t, 3, (2, 3), 1),
    "lp_inf": lambda t: P.lp_pool2d(t, float("inf"), 2),
    "spp": lambda t: P.spatial_pyramid_pool(t, (1, 2, 3)),
}


@pytest.mark.parametrize("name", sorted(GRADCHECKS))
def test_gradcheck_float64(name, rng):
    x = _perm(rng, (1, 2, 5, 6)) + 0.5      # positive, so x**p is defined for any p
    assert fc.gradcheck(GRADCHECKS[name], [fc.Tensor(x, requires_grad=True)])


def test_adaptive_and_lp_match_reference(rng):
    x = np.abs(rng.standard_normal((2, 3, 7, 9))) + 0.1
    assert_close(P.adaptive_avg_pool2d(x, (3, 4)).data, ref.adaptive_avg_pool2d(x, (3, 4)),
                 np.float64)
    y, idx = P.adaptive_max_pool2d(x, (3, 4), return_indices=True)
    ro, ri = ref.adaptive_max_pool2d(x, (3, 4))
    assert np.array_equal(y.data, ro) and np.array_equal(idx, ri)
    for p in (1, 2, 3.5, np.inf):
        assert_close(P.lp_pool2d(x, p, 3, 2, True).data, ref.lp_pool2d(x, p, 3, 2, True),
                     np.float64)
    xt = fc.Tensor(x, requires_grad=True)
    y = P.lp_pool2d(xt, 2.5, (2, 3), (2, 2))
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    assert_close(xt.grad, ref.lp_pool2d_backward(gy, x, 2.5, (2, 3), (2, 2)), np.float64)


def test_output_size_none_keeps_input_size():
    x = np.ones((1, 2, 6, 5), np.float32)
    assert P.adaptive_avg_pool2d(x, (None, 2)).shape == (1, 2, 6, 2)
    assert P.adaptive_max_pool2d(x, (3, None)).shape == (1, 2, 3, 5)


def test_spatial_pyramid_pool_fixed_length(rng):
    for hw in [(13, 9), (4, 4), (2, 3), (32, 17)]:
        x = rng.standard_normal((2, 3) + hw)
        y = P.spatial_pyramid_pool(x, (1, 2, 4))
        assert y.shape == (2, 3 * (1 + 4 + 16))
        parts = [ref.adaptive_max_pool2d(x, L)[0].reshape(2, -1) for L in (1, 2, 4)]
        assert np.array_equal(y.data, np.concatenate(parts, axis=1))
    assert P.spatial_pyramid_pool(rng.standard_normal((3, 5, 5)), [2]).shape == (12,)


def test_unbatched_input(rng):
    x = rng.standard_normal((3, 7, 6))
    y, idx = P.max_pool2d(x, 3, 2, 1, return_indices=True)
    ro, ri = ref.max_pool2d(x[None], 3, 2, 1)
    assert y.shape == (3, 4, 3) and np.array_equal(y.data, ro[0]) and np.array_equal(idx, ri[0])
    assert_close(P.avg_pool2d(x, 2).data, ref.avg_pool2d(x[None], 2)[0], np.float64)
    assert P.adaptive_avg_pool2d(x, 1).shape == (3, 1, 1)
    assert P.adaptive_max_pool2d(x, 2, return_indices=True)[1].shape == (3, 2, 2)
    assert P.lp_pool2d(np.abs(x), 2, 2).shape == (3, 3, 3)
    xt = fc.Tensor(x, requires_grad=True)
    P.max_pool2d(xt, 2).sum().backward()
    assert xt.grad.shape == x.shape and xt.grad.sum() == 3 * 3 * 3


@pytest.mark.parametrize("layout", ["fortran", "strided", "readonly", "broadcast", "negative"])
def test_odd_layouts_give_same_result(layout, rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    if layout == "fortran":
        x2 = np.asfortranarray(x)
    elif layout == "strided":
        big = np.zeros((2, 6, 8, 16), np.float32)
        big[:, ::2, :, ::2] = x
        x2 = big[:, ::2, :, ::2]
    elif layout == "readonly":
        x2 = x.copy()
        x2.flags.writeable = False
    elif layout == "broadcast":
        x2 = np.broadcast_to(x[:1], x.shape)
        x = np.ascontiguousarray(x2)
    else:
        x2 = x[:, :, ::-1, ::-1].copy()[:, :, ::-1, ::-1]
    for f in (lambda a: P.max_pool2d(a, 3, 2, 1), lambda a: P.avg_pool2d(a, 2),
              lambda a: P.adaptive_avg_pool2d(a, 3), lambda a: P.adaptive_max_pool2d(a, 3),
              lambda a: P.lp_pool2d(a, 2, 2), lambda a: P.spatial_pyramid_pool(a, (1, 2))):
        assert np.array_equal(f(x2).data, f(x).data, equal_nan=True)


def test_no_grad_saves_nothing(rng):
    x = fc.Tensor(rng.standard_normal((1, 2, 4, 4)), requires_grad=True)
    with fc.no_grad():
        y = P.max_pool2d(x, 2)
    assert not y.requires_grad


def test_max_pool_inference_path_matches_training_path(rng):
    """Without grad and return_indices the kernel stores no index; values must not change,
    and return_indices under no_grad still returns them."""
    x = rng.standard_normal((2, 3, 11, 13)).astype(np.float32)
    train_y, train_idx = P.max_pool2d(fc.Tensor(x, requires_grad=True), 3, 2, 1,
                                      return_indices=True)
    with fc.no_grad():
        y = P.max_pool2d(x, 3, 2, 1)
        y2, idx = P.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert np.array_equal(y.data, train_y.data)
    assert np.array_equal(y2.data, train_y.data) and np.array_equal(idx, train_idx)


@pytest.mark.parametrize("call, exc, match", [
    (lambda x: P.max_pool2d(x[0, 0], 2), ValueError, "expected input to be 3-D or 4-D"),
    (lambda x: P.max_pool2d(x.astype(np.float16), 2), TypeError, "float16"),
    (lambda x: P.avg_pool2d(x.astype(np.int32), 2), TypeError, "int32"),
    (lambda x: P.max_pool2d(x.astype(bool), 2), TypeError, "bool"),
    (lambda x: P.adaptive_avg_pool2d(x.astype(np.complex64), 2), TypeError, "complex64"),
    (lambda x: P.max_pool2d(x, 0), ValueError, "expected kernel_size to be positive"),
    (lambda x: P.max_pool2d(x, 2, stride=0), ValueError, "expected stride to be positive"),
    (lambda x: P.avg_pool2d(x, 2, stride=(1, -1)), ValueError, "stride"),
    (lambda x: P.max_pool2d(x, 2, padding=-1), ValueError, "padding to be non-negative"),
    (lambda x: P.max_pool2d(x, 3, padding=2), ValueError, "padding at most half"),
    (lambda x: P.avg_pool2d(x, (2, 4), padding=(1, 3)), ValueError, "padding at most half"),
    (lambda x: P.max_pool2d(x, 2, dilation=0), ValueError, "dilation to be positive"),
    (lambda x: P.max_pool2d(x, 2, 2, 0, 9), ValueError,
     r"padded input size 6 \+ 2\*0 = 6, effective kernel size 10"),
    (lambda x: P.avg_pool2d(x, 7), ValueError, r"expected an output height >= 1"),
    (lambda x: P.max_pool2d(x, 2.5), TypeError, "kernel_size to be an int"),
    (lambda x: P.adaptive_avg_pool2d(x, 0), ValueError, "expected output_size >= 1"),
    (lambda x: P.adaptive_max_pool2d(x, (2, 2, 2)), TypeError, "expected output_size"),
    (lambda x: P.adaptive_avg_pool2d(x, "2"), TypeError, "expected output_size"),
    (lambda x: P.spatial_pyramid_pool(x, ()), TypeError, "expected levels"),
    (lambda x: P.spatial_pyramid_pool(x, (1, 0)), ValueError, "expected every level >= 1"),
    (lambda x: P.spatial_pyramid_pool(x, 4), TypeError, "expected levels"),
    (lambda x: P.lp_pool2d(x, 0, 2), ValueError, "expected norm_type > 0"),
    (lambda x: P.lp_pool2d(x, -1.5, 2), ValueError, "expected norm_type > 0"),
    (lambda x: P.lp_pool2d(x, "2", 2), TypeError, "expected norm_type"),
    (lambda x: P.avg_pool2d(x, 2, divisor_override=0), ValueError, "divisor_override"),
])
def test_validation_errors(call, exc, match):
    x = np.ones((1, 2, 6, 5))
    with pytest.raises(exc, match=match):
        call(x)
