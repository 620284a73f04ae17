"""The NumPy oracle proved right on its own terms, independently of the compiled kernels.

(a) the forwards against brute-force pure-Python loops written from the definitions;
(b) adjoint identities tying each backward to its forward;
(c) backwards against float64 central differences;
(d) conv_transpose2d against conv2d's input gradient (Chainer's symmetry), plus its own
    brute force, adjoints and finite differences;
(e) dtypes, layouts and argument errors;
(f) PyTorch, when it is installed.
"""
import itertools

import numpy as np
import pytest

from fastconv.reference import (
    conv2d,
    conv2d_backward_bias,
    conv2d_backward_input,
    conv2d_backward_weight,
    conv_transpose2d,
    conv_transpose2d_backward_bias,
    conv_transpose2d_backward_input,
    conv_transpose2d_backward_weight,
)

# (C_in, C_out, groups): plain, grouped, depthwise with channel multiplier 1 and 2.
GROUPS = {"g1": (3, 2, 1), "g2": (4, 6, 2), "dw1": (3, 3, 3), "dw2": (3, 6, 3)}


def pair(v):
    return (v, v) if np.ndim(v) == 0 else tuple(v)


def random(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------------------- brute force

def brute_conv2d(x, w, b, stride, padding, dilation, groups):
    """y[n,co,oh,ow] = b[co] + sum_{ci,kh,kw} x_pad[n, g*Cg+ci, oh*s+kh*d, ow*s+kw*d] w[co,ci,kh,kw]."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n_, c_in, h, w_ = x.shape
    c_out, cg, kh_, kw_ = w.shape
    cog = c_out // groups
    xp = np.zeros((n_, c_in, h + 2 * ph, w_ + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + w_] = x
    oh_ = (h + 2 * ph - dh * (kh_ - 1) - 1) // sh + 1
    ow_ = (w_ + 2 * pw - dw * (kw_ - 1) - 1) // sw + 1
    y = np.zeros((n_, c_out, oh_, ow_))
    for n in range(n_):
        for co in range(c_out):
            g = co // cog
            for oh in range(oh_):
                for ow in range(ow_):
                    acc = 0.0 if b is None else float(b[co])
                    for ci in range(cg):
                        for kh in range(kh_):
                            for kw in range(kw_):
                                acc += (xp[n, g * cg + ci, oh * sh + kh * dh, ow * sw + kw * dw]
                                        * w[co, ci, kh, kw])
                    y[n, co, oh, ow] = acc
    return y


def brute_conv_transpose2d(x, w, stride, padding, output_padding, groups, dilation):
    """Each input pixel scatters x * w into the un-cropped output; crop padding per side."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    (oph, opw), (dh, dw) = pair(output_padding), pair(dilation)
    n_, c_in, h, w_ = x.shape
    _, cog, kh_, kw_ = w.shape
    cig = c_in // groups
    full = np.zeros((n_, cog * groups, (h - 1) * sh + dh * (kh_ - 1) + oph + 1,
                     (w_ - 1) * sw + dw * (kw_ - 1) + opw + 1))
    for n in range(n_):
        for ci in range(c_in):
            g = ci // cig
            for ih in range(h):
                for iw in range(w_):
                    for co in range(cog):
                        for kh in range(kh_):
                            for kw in range(kw_):
                                full[n, g * cog + co, ih * sh + kh * dh, iw * sw + kw * dw] += (
                                    x[n, ci, ih, iw] * w[ci, co, kh, kw])
    return full[:, :, ph:full.shape[2] - ph, pw:full.shape[3] - pw]


def assert_allclose(actual, expected, tol=1e-10):
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("groups_case", list(GROUPS))
@pytest.mark.parametrize("dilation", [1, 2, (1, 2)])
@pytest.mark.parametrize("padding", [0, 1, 2, (2, 0)])
@pytest.mark.parametrize("stride", [1, 2, 3, (2, 1)])
def test_conv2d_matches_brute_force(stride, padding, dilation, groups_case, rng):
    c_in, c_out, groups = GROUPS[groups_case]
    x = random(rng, (2, c_in, 5, 6))
    w = random(rng, (c_out, c_in // groups, 2, 3))          # non-square kernel
    for b in (None, random(rng, (c_out,))):
        expected = brute_conv2d(x, w, b, stride, padding, dilation, groups)
        assert_allclose(conv2d(x, w, b, stride, padding, dilation, groups), expected)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((1, 1, 4, 5), (1, 1, 1, 1), {}),                                   # 1x1, N = 1, C = 1
    ((2, 3, 4, 5), (2, 3, 1, 1), dict(stride=2)),                       # strided pointwise
    ((1, 2, 3, 4), (3, 2, 5, 6), dict(padding=1)),                      # kernel == padded input
    ((1, 2, 3, 4), (3, 2, 3, 3), dict(padding=(0, 1), dilation=(1, 2))),  # dilated, == input
    ((2, 2, 1, 7), (2, 1, 1, 3), dict(stride=(1, 3), groups=2)),        # single row
])
def test_conv2d_edge_cases_match_brute_force(x_shape, w_shape, kwargs, rng):
    x, w, b = random(rng, x_shape), random(rng, w_shape), random(rng, (w_shape[0],))
    expected = brute_conv2d(x, w, b, kwargs.get("stride", 1), kwargs.get("padding", 0),
                            kwargs.get("dilation", 1), kwargs.get("groups", 1))
    assert_allclose(conv2d(x, w, b, **kwargs), expected)


def test_conv2d_empty_batch(rng):
    x, w = np.zeros((0, 3, 5, 5)), random(rng, (4, 3, 3, 3))
    assert conv2d(x, w, padding=1).shape == (0, 4, 5, 5)
    gy = np.zeros((0, 4, 5, 5))
    assert conv2d_backward_input(gy, w, x.shape, padding=1).shape == x.shape
    np.testing.assert_array_equal(conv2d_backward_weight(x, gy, w.shape, padding=1), 0)


# ----------------------------------------------------------------------------- adjoints

def inner(a, b):
    """<a, b> and the scale of its terms, for a relative comparison."""
    return float(np.sum(a * b)), float(np.sum(np.abs(a * b)))


def assert_same_inner(lhs, rhs, tol=1e-10):
    (value_l, scale_l), (value_r, scale_r) = lhs, rhs
    assert abs(value_l - value_r) <= tol * max(scale_l, scale_r, 1e-300)


ADJOINT_GEOMETRIES = list(itertools.product([1, 2, 3, (3, 2)], [0, 1, 2], [1, 2, (2, 1)]))


@pytest.mark.parametrize("groups_case", list(GROUPS))
@pytest.mark.parametrize("stride, padding, dilation", ADJOINT_GEOMETRIES)
def test_conv2d_adjoint_identities(stride, padding, dilation, groups_case, rng):
    c_in, c_out, groups = GROUPS[groups_case]
    x = random(rng, (2, c_in, 8, 7))
    w = random(rng, (c_out, c_in // groups, 3, 2))
    y = conv2d(x, w, None, stride, padding, dilation, groups)
    gy = random(rng, y.shape)
    gx = conv2d_backward_input(gy, w, x.shape, stride, padding, dilation, groups)
    gw = conv2d_backward_weight(x, gy, w.shape, stride, padding, dilation, groups)
    assert gx.shape == x.shape and gw.shape == w.shape
    assert_same_inner(inner(y, gy), inner(x, gx))
    assert_same_inner(inner(y, gy), inner(w, gw))


@pytest.mark.parametrize("h, w, k, stride, padding, dilation", [
    (8, 9, (3, 2), (3, 2), (0, 0), (1, 1)),
    (10, 8, (2, 3), (4, 3), (0, 0), (2, 1)),
    (13, 13, (3, 3), (4, 5), (1, 1), (2, 1)),
])
def test_unreached_input_gets_zero_gradient(h, w, k, stride, padding, dilation, rng):
    x = random(rng, (2, 4, h, w))
    wt = random(rng, (6, 2, *k))
    y = conv2d(x, wt, None, stride, padding, dilation, 2)
    # The last input row/column a window reaches, in unpadded coordinates: here the
    # remainder (H + 2p - d(k-1) - 1) % s exceeds p, so real input is left unreached.
    last_h = (y.shape[2] - 1) * stride[0] + dilation[0] * (k[0] - 1) - padding[0]
    last_w = (y.shape[3] - 1) * stride[1] + dilation[1] * (k[1] - 1) - padding[1]
    assert last_h < h - 1 and last_w < w - 1
    gy = random(rng, y.shape)
    gx = conv2d_backward_input(gy, wt, x.shape, stride, padding, dilation, 2)
    gw = conv2d_backward_weight(x, gy, wt.shape, stride, padding, dilation, 2)
    assert_same_inner(inner(y, gy), inner(x, gx))
    assert_same_inner(inner(y, gy), inner(wt, gw))
    np.testing.assert_array_equal(gx[:, :, last_h + 1:, :], 0)
    np.testing.assert_array_equal(gx[:, :, :, last_w + 1:], 0)
    assert np.all(np.abs(gx[:, :, last_h, :]).sum(axis=-1) > 0)


# ----------------------------------------------------------------------------- finite differences

def numerical_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of a (in place)."""
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        saved = a[idx]
        a[idx] = saved + eps
        f_plus = f()
        a[idx] = saved - eps
        f_minus = f()
        a[idx] = saved
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


FD_CASES = [
    dict(stride=1, padding=1, dilation=1, groups=1),
    dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2), groups=2),
    dict(stride=2, padding=2, dilation=2, groups=4),           # depthwise, multiplier 2
]


@pytest.mark.parametrize("kwargs", FD_CASES)
def test_conv2d_backward_matches_finite_differences(kwargs, rng):
    g = kwargs["groups"]
    x = random(rng, (2, 4, 5, 4))
    w = random(rng, (8 if g == 4 else 6, 4 // g, 3, 2))
    b = random(rng, (w.shape[0],))
    gy = random(rng, conv2d(x, w, b, **kwargs).shape)

    def loss():
        return float(np.sum(conv2d(x, w, b, **kwargs) * gy))

    tol = 1e-7
    assert_allclose(conv2d_backward_input(gy, w, x.shape, **kwargs), numerical_grad(loss, x), tol)
    assert_allclose(conv2d_backward_weight(x, gy, w.shape, **kwargs), numerical_grad(loss, w), tol)
    assert_allclose(conv2d_backward_bias(gy), numerical_grad(loss, b), tol)


TRANSPOSE_FD_CASES = [
    dict(stride=2, padding=1, output_padding=1, groups=1, dilation=1),
    dict(stride=(1, 3), padding=(0, 2), output_padding=(1, 2), groups=2, dilation=(2, 1)),
    dict(stride=2, padding=0, output_padding=0, groups=4, dilation=2),
]


@pytest.mark.parametrize("kwargs", TRANSPOSE_FD_CASES)
def test_conv_transpose2d_backward_matches_finite_differences(kwargs, rng):
    g = kwargs["groups"]
    x = random(rng, (2, 4, 4, 3))
    w = random(rng, (4, 2, 3, 2))
    b = random(rng, (2 * g,))
    gy = random(rng, conv_transpose2d(x, w, b, **kwargs).shape)

    def loss():
        return float(np.sum(conv_transpose2d(x, w, b, **kwargs) * gy))

    tol = 1e-7
    assert_allclose(conv_transpose2d_backward_input(gy, w, x.shape, **kwargs),
                    numerical_grad(loss, x), tol)
    assert_allclose(conv_transpose2d_backward_weight(x, gy, w.shape, **kwargs),
                    numerical_grad(loss, w), tol)
    assert_allclose(conv_transpose2d_backward_bias(gy), numerical_grad(loss, b), tol)


# ----------------------------------------------------------------------------- conv_transpose2d

def transpose_grid():
    """Valid (stride, padding, output_padding, dilation): output_padding < max(s, d)."""
    for stride, padding, op, dilation in itertools.product(
            [1, 2, (2, 3)], [0, (1, 2)], [0, 1, (1, 0)], [1, 2, (2, 1)]):
        if all(o < max(s, d) for o, s, d in zip(pair(op), pair(stride), pair(dilation))):
            yield stride, padding, op, dilation


TRANSPOSE_GRID = list(transpose_grid())


@pytest.mark.parametrize("groups_case", list(GROUPS))
@pytest.mark.parametrize("stride, padding, output_padding, dilation", TRANSPOSE_GRID)
def test_conv_transpose2d_matches_brute_force(stride, padding, output_padding, dilation,
                                              groups_case, rng):
    c_in, c_out, groups = GROUPS[groups_case]
    x = random(rng, (2, c_in, 3, 4))
    w = random(rng, (c_in, c_out // groups, 3, 2))
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    (oph, opw), (dh, dw) = pair(output_padding), pair(dilation)
    expected_shape = (2, c_out, (3 - 1) * sh - 2 * ph + dh * (3 - 1) + oph + 1,
                      (4 - 1) * sw - 2 * pw + dw * (2 - 1) + opw + 1)
    b = random(rng, (c_out,))
    expected = brute_conv_transpose2d(x, w, stride, padding, output_padding, groups,
                                      dilation)
    assert expected.shape == expected_shape
    assert_allclose(conv_transpose2d(x, w, None, stride, padding, output_padding, groups,
                                     dilation), expected)
    assert_allclose(conv_transpose2d(x, w, b, stride, padding, output_padding, groups,
                                     dilation), expected + b.reshape(1, -1, 1, 1))


@pytest.mark.parametrize("groups_case", list(GROUPS))
@pytest.mark.parametrize("stride, padding, output_padding, dilation", TRANSPOSE_GRID)
def test_conv_transpose2d_is_conv2d_backward_input(stride, padding, output_padding, dilation,
                                                   groups_case, rng):
    c_in, c_out, groups = GROUPS[groups_case]
    x = random(rng, (2, c_in, 5, 4))
    w = random(rng, (c_in, c_out // groups, 3, 2))
    y = conv_transpose2d(x, w, None, stride, padding, output_padding, groups, dilation)
    gy = random(rng, y.shape)
    gx = conv_transpose2d_backward_input(gy, w, x.shape, stride, padding, output_padding,
                                         groups, dilation)
    gw = conv_transpose2d_backward_weight(x, gy, w.shape, stride, padding, output_padding,
                                          groups, dilation)
    # Adjoint identities hold for every valid output_padding ...
    assert_same_inner(inner(y, gy), inner(x, gx))
    assert_same_inner(inner(y, gy), inner(w, gw))
    # ... and when output_padding < stride, the transposed conv is exactly the input
    # gradient of the conv from y's shape back to x's shape, with the same weight array.
    if all(o < s for o, s in zip(pair(output_padding), pair(stride))):
        assert_allclose(y, conv2d_backward_input(x, w, y.shape, stride, padding, dilation,
                                                 groups))
        assert_allclose(gx, conv2d(gy, w, None, stride, padding, dilation, groups))
        assert_allclose(gw, conv2d_backward_weight(gy, x, w.shape, stride, padding, dilation,
                                                   groups))


# ----------------------------------------------------------------------------- dtypes, layouts, errors

def all_outputs(x, w, b, gy_conv, gy_t, conv_kw, t_kw):
    wt = w      # (4, 2, kH, kW) is also a transposed-conv weight for 4 -> 4 channels, groups 2
    return {
        "conv2d": conv2d(x, w, b, **conv_kw),
        "conv2d_backward_input": conv2d_backward_input(gy_conv, w, x.shape, **conv_kw),
        "conv2d_backward_weight": conv2d_backward_weight(x, gy_conv, w.shape, **conv_kw),
        "conv2d_backward_bias": conv2d_backward_bias(gy_conv),
        "conv_transpose2d": conv_transpose2d(x, wt, b, **t_kw),
        "conv_transpose2d_backward_input":
            conv_transpose2d_backward_input(gy_t, wt, x.shape, **t_kw),
        "conv_transpose2d_backward_weight":
            conv_transpose2d_backward_weight(x, gy_t, wt.shape, **t_kw),
        "conv_transpose2d_backward_bias": conv_transpose2d_backward_bias(gy_t),
    }


def test_float32_in_float32_out_and_close_to_float64(rng):
    conv_kw = dict(stride=2, padding=1, dilation=1, groups=2)
    t_kw = dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    x = random(rng, (2, 4, 7, 6))
    w = random(rng, (4, 2, 3, 3))            # conv: 4 -> 4; transposed: 4 -> 4
    b = random(rng, (4,))
    gy_conv = random(rng, conv2d(x, w, b, **conv_kw).shape)
    gy_t = random(rng, conv_transpose2d(x, w, b, **t_kw).shape)
    ref = all_outputs(x, w, b, gy_conv, gy_t, conv_kw, t_kw)
    f32 = [a.astype(np.float32) for a in (x, w, b, gy_conv, gy_t)]
    out = all_outputs(*f32, conv_kw, t_kw)
    for name in ref:
        assert out[name].dtype == np.float32, name
        assert_allclose(out[name], ref[name], tol=1e-5)


def test_layout_and_read_only_inputs_give_same_answer(rng):
    kw = dict(stride=(1, 2), padding=1, dilation=(2, 1), groups=1)
    x = random(rng, (2, 3, 6, 7))
    w = random(rng, (4, 3, 3, 2))
    gy = random(rng, conv2d(x, w, **kw).shape)
    expected = (conv2d(x, w, **kw), conv2d_backward_input(gy, w, x.shape, **kw),
                conv2d_backward_weight(x, gy, w.shape, **kw))
    fortran = [np.asfortranarray(a) for a in (x, w, gy)]
    strided = [np.repeat(a, 2, axis=-1)[..., ::2] for a in (x, w, gy)]
    read_only = [a.copy() for a in (x, w, gy)]
    for a in read_only:
        a.flags.writeable = False
    for xx, ww, gg in (fortran, strided, read_only):
        got = (conv2d(xx, ww, **kw), conv2d_backward_input(gg, ww, x.shape, **kw),
               conv2d_backward_weight(xx, gg, w.shape, **kw))
        for a, e in zip(got, expected):
            assert a.flags.c_contiguous
            np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("call", [
    lambda: conv2d(np.zeros((1, 3, 5, 5)), np.zeros((2, 2, 3, 3))),             # C_in
    lambda: conv2d(np.zeros((1, 4, 5, 5)), np.zeros((3, 2, 3, 3)), groups=2),   # C_out % g
    lambda: conv2d(np.zeros((1, 3, 2, 5)), np.zeros((2, 3, 3, 3))),             # too small
    lambda: conv2d(np.zeros((3, 5, 5)), np.zeros((2, 3, 3, 3))),                # 3-D x
    lambda: conv2d(np.zeros((1, 3, 5, 5)), np.zeros((2, 3, 3, 3)), np.zeros(3)),  # bias
    lambda: conv2d(np.zeros((1, 3, 5, 5)), np.zeros((2, 3, 3, 3)), stride=(1, 2, 3)),
    lambda: conv2d_backward_input(np.zeros((1, 2, 4, 4)), np.zeros((2, 3, 3, 3)),
                                  (1, 3, 5, 5)),                                # grad_out
    lambda: conv2d_backward_weight(np.zeros((1, 3, 5, 5)), np.zeros((1, 2, 3, 3)),
                                   (2, 3, 3, 3), padding=1),                    # grad_out
    lambda: conv_transpose2d(np.zeros((1, 3, 5, 5)), np.zeros((2, 3, 3, 3))),   # weight rows
    lambda: conv_transpose2d(np.zeros((1, 3, 5, 5)), np.zeros((3, 3, 3, 3)), groups=2),
    lambda: conv_transpose2d(np.zeros((1, 3, 5, 5)), np.zeros((3, 3, 3, 3)),
                             stride=2, output_padding=2),                       # op >= s, d
    lambda: conv_transpose2d(np.zeros((1, 3, 1, 1)), np.zeros((3, 3, 1, 1)), padding=1),
    lambda: conv_transpose2d_backward_input(np.zeros((1, 3, 5, 5)), np.zeros((3, 3, 3, 3)),
                                            (1, 3, 5, 5)),                      # grad_out
    lambda: conv_transpose2d_backward_weight(np.zeros((1, 3, 5, 5)), np.zeros((1, 3, 7, 6)),
                                             (3, 3, 3, 3)),                     # grad_out
])
def test_shape_mismatch_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


# ----------------------------------------------------------------------------- PyTorch

def random_conv_cases(seed, count, transposed):
    """Random valid geometries (float64 arrays) for the PyTorch comparison."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        groups = int(rng.choice([1, 2, 3]))
        c_in = groups * int(rng.integers(1, 4))
        c_out = groups * int(rng.integers(1, 4))
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(v) for v in rng.integers(0, 3, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        hw = tuple(int(v) for v in rng.integers(1, 10, 2))
        x = rng.standard_normal((int(rng.integers(1, 4)), c_in, *hw))
        b = rng.standard_normal(c_out) if rng.random() < 0.5 else None
        if transposed:
            op = tuple(int(rng.integers(0, max(si, di))) for si, di in zip(s, d))
            out = [(i - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
                   for i, si, pi, di, ki, oi in zip(hw, s, p, d, k, op)]
            w = rng.standard_normal((c_in, c_out // groups, *k))
            kwargs = dict(stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
        else:
            out = [(i + 2 * pi - di * (ki - 1) - 1) // si + 1
                   for i, si, pi, di, ki in zip(hw, s, p, d, k)]
            w = rng.standard_normal((c_out, c_in // groups, *k))
            kwargs = dict(stride=s, padding=p, dilation=d, groups=groups)
        if min(out) >= 1:
            cases.append((x, w, b, kwargs))
    return cases


def torch_forward_backward(fn, x, w, b, kwargs, gy_seed):
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    y = fn(xt, wt, bt, **kwargs)
    gy = np.random.default_rng(gy_seed).standard_normal(tuple(y.shape))
    y.backward(torch.tensor(gy))
    return (y.detach().numpy(), gy, xt.grad.numpy(), wt.grad.numpy(),
            None if b is None else bt.grad.numpy())


@pytest.mark.parametrize("case", range(12))
def test_conv2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    x, w, b, kwargs = random_conv_cases(11, 12, transposed=False)[case]
    y, gy, gx, gw, gb = torch_forward_backward(torch.nn.functional.conv2d, x, w, b, kwargs,
                                               case)
    assert_allclose(conv2d(x, w, b, **kwargs), y)
    assert_allclose(conv2d_backward_input(gy, w, x.shape, **kwargs), gx)
    assert_allclose(conv2d_backward_weight(x, gy, w.shape, **kwargs), gw)
    if b is not None:
        assert_allclose(conv2d_backward_bias(gy), gb)


@pytest.mark.parametrize("case", range(12))
def test_conv_transpose2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    x, w, b, kwargs = random_conv_cases(12, 12, transposed=True)[case]
    y, gy, gx, gw, gb = torch_forward_backward(torch.nn.functional.conv_transpose2d,
                                               x, w, b, kwargs, case)
    assert_allclose(conv_transpose2d(x, w, b, **kwargs), y)
    assert_allclose(conv_transpose2d_backward_input(gy, w, x.shape, **kwargs), gx)
    assert_allclose(conv_transpose2d_backward_weight(x, gy, w.shape, **kwargs), gw)
    if b is not None:
        assert_allclose(conv_transpose2d_backward_bias(gy), gb)
