"""fastconv.reference.pool proved on its own terms: against brute-force Python loops written
from PyTorch's definitions on tiny inputs, adjoint identities for the backwards, and against
PyTorch itself when it is installed."""
import itertools
import math

import numpy as np
import pytest

from fastconv.reference import pool as ref

GEOMS = [  # kernel, stride, padding, dilation, ceil_mode
    (2, 2, 0, 1, False), (3, 2, 1, 1, False), (3, 2, 1, 1, True), ((2, 3), (1, 2), (1, 0),
                                                                    (2, 1), True),
    (1, 3, 0, 1, True), (3, 1, 1, 2, False), (2, 3, 1, 1, True),
]


def _p(v):
    return (v, v) if np.ndim(v) == 0 else tuple(v)


def _size(n, k, s, p, d, ceil):
    span = n + 2 * p - d * (k - 1) - 1
    o = (math.ceil(span / s) if ceil else span // s) + 1
    return o - 1 if ceil and (o - 1) * s >= n + p else o


def brute_max(x, k, s, p, d, ceil):
    """PyTorch's CPU loop, literally."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _p(k), _p(s), _p(p), _p(d)
    n, c, h, w = x.shape
    oh, ow = _size(h, kh, sh, ph, dh, ceil), _size(w, kw, sw, pw, dw, ceil)
    out, idx = np.empty((n, c, oh, ow)), np.empty((n, c, oh, ow), np.int64)
    for b, ch, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        h0, w0 = i * sh - ph, j * sw - pw
        h1, w1 = min(h0 + (kh - 1) * dh + 1, h), min(w0 + (kw - 1) * dw + 1, w)
        while h0 < 0:
            h0 += dh
        while w0 < 0:
            w0 += dw
        m, mi = -math.inf, h0 * w + w0
        for ih in range(h0, h1, dh):
            for iw in range(w0, w1, dw):
                v = x[b, ch, ih, iw]
                if v > m or math.isnan(v):
                    m, mi = v, ih * w + iw
        out[b, ch, i, j], idx[b, ch, i, j] = m, mi
    return out, idx


def brute_avg(x, k, s, p, ceil, include_pad, override):
    (kh, kw), (sh, sw), (ph, pw) = _p(k), _p(s), _p(p)
    n, c, h, w = x.shape
    oh, ow = _size(h, kh, sh, ph, 1, ceil), _size(w, kw, sw, pw, 1, ceil)
    out = np.empty((n, c, oh, ow))
    for b, ch, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        h0, w0 = i * sh - ph, j * sw - pw
        h1, w1 = min(h0 + kh, h + ph), min(w0 + kw, w + pw)
        size = (h1 - h0) * (w1 - w0)
        h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
        div = override or (size if include_pad else (h1 - h0) * (w1 - w0))
        out[b, ch, i, j] = x[b, ch, h0:h1, w0:w1].sum() / div
    return out


def brute_adaptive(x, out_hw, reduce):
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = np.empty((n, c, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        h0, h1 = (i * h) // oh, math.ceil((i + 1) * h / oh)
        w0, w1 = (j * w) // ow, math.ceil((j + 1) * w / ow)
        out[:, :, i, j] = reduce(x[:, :, h0:h1, w0:w1], axis=(2, 3))
    return out


@pytest.mark.parametrize("geom", GEOMS)
def test_max_against_brute_force(geom, rng):
    x = rng.standard_normal((2, 2, 6, 7))
    x[0, 0] = np.round(x[0, 0])       # ties
    x[1, 1, 2, 3] = x[1, 1, 4, 4] = np.nan
    o, i = ref.max_pool2d(x, *geom)
    bo, bi = brute_max(x, *geom)
    assert np.array_equal(o, bo, equal_nan=True) and np.array_equal(i, bi)


@pytest.mark.parametrize("geom", [g for g in GEOMS if _p(g[3]) == (1, 1)])
@pytest.mark.parametrize("include_pad, override", [(True, None), (False, None), (True, 2)])
def test_avg_against_brute_force_and_adjoint(geom, include_pad, override, rng):
    k, s, p, _, ceil = geom
    x = rng.standard_normal((2, 2, 6, 7))
    y = ref.avg_pool2d(x, k, s, p, ceil, include_pad, override)
    np.testing.assert_allclose(y, brute_avg(x, k, s, p, ceil, include_pad, override),
                               rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    gx = ref.avg_pool2d_backward(g, x.shape, k, s, p, ceil, include_pad, override)
    assert abs(np.vdot(y, g) - np.vdot(x, gx)) < 1e-10


def test_max_backward_is_adjoint_on_distinct_values(rng):
    x = rng.permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6).astype(float)
    y, idx = ref.max_pool2d(x, 3, 2, 1)
    g = rng.standard_normal(y.shape)
    gx = ref.max_pool2d_backward(g, idx, x.shape)
    # linear in x around a tie-free point: <y, g> == <x, gx>
    assert abs(np.vdot(y, g) - np.vdot(x, gx)) < 1e-9


@pytest.mark.parametrize("hw, out_hw", [((7, 9), (3, 4)), ((4, 6), (5, 7)), ((5, 5), (1, 1))])
def test_adaptive_against_brute_force(hw, out_hw, rng):
    x = rng.standard_normal((2, 3) + hw)
    np.testing.assert_allclose(ref.adaptive_avg_pool2d(x, out_hw),
                               brute_adaptive(x, out_hw, np.mean), rtol=1e-12)
    assert np.array_equal(ref.adaptive_max_pool2d(x, out_hw)[0],
                          brute_adaptive(x, out_hw, np.max))
    y = ref.adaptive_avg_pool2d(x, out_hw)
    g = rng.standard_normal(y.shape)
    assert abs(np.vdot(y, g) - np.vdot(x, ref.adaptive_avg_pool2d_backward(g, x.shape))) < 1e-10


def test_lp_is_p_norm_of_full_windows(rng):
    x = np.abs(rng.standard_normal((1, 2, 6, 6)))
    for p in (1, 2, 3):
        y = ref.lp_pool2d(x, p, 2)
        brute = np.array([[[np.sum(x[0, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2] ** p) ** (1 / p)
                            for j in range(3)] for i in range(3)] for c in range(2)])
        np.testing.assert_allclose(y[0], brute, rtol=1e-12)
        # backward against central differences
        g = rng.standard_normal(y.shape)
        gx = ref.lp_pool2d_backward(g, x, p, 2)
        e = np.zeros_like(x)
        e[0, 1, 3, 2] = 1e-6
        num = (np.vdot(ref.lp_pool2d(x + e, p, 2), g) - np.vdot(ref.lp_pool2d(x - e, p, 2), g))
        assert abs(num / 2e-6 - gx[0, 1, 3, 2]) < 1e-6


# ----------------------------------------------------------------------------- PyTorch

@pytest.mark.parametrize("geom", GEOMS)
def test_against_torch(geom, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    k, s, p, d, ceil = geom
    x = rng.standard_normal((2, 3, 7, 8))
    x[0, 0] = np.round(x[0, 0])
    x[1, 2, 3, 3] = np.nan
    g = None
    tx = torch.from_numpy(x).requires_grad_()
    to, ti = F.max_pool2d(tx, k, s, p, d, ceil, return_indices=True)
    o, i = ref.max_pool2d(x, k, s, p, d, ceil)
    assert np.array_equal(o, to.detach().numpy(), equal_nan=True)
    assert np.array_equal(i, ti.numpy())
    g = rng.standard_normal(o.shape)
    to.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ref.max_pool2d_backward(g, i, x.shape), tx.grad.numpy())
    if _p(d) != (1, 1):
        return
    x = rng.standard_normal((2, 3, 7, 8))
    for include_pad, override in [(True, None), (False, None), (True, 3)]:
        tx = torch.from_numpy(x).requires_grad_()
        ta = F.avg_pool2d(tx, k, s, p, ceil, include_pad, override)
        ta.backward(torch.from_numpy(g))
        np.testing.assert_allclose(ref.avg_pool2d(x, k, s, p, ceil, include_pad, override),
                                   ta.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(
            ref.avg_pool2d_backward(g, x.shape, k, s, p, ceil, include_pad, override),
            tx.grad.numpy(), rtol=1e-12)
    if _p(p) == (0, 0):
        xa = np.abs(x) + 0.1
        for norm in (1, 2, 3.5, float("inf")):
            tx = torch.from_numpy(xa).requires_grad_()
            tl = F.lp_pool2d(tx, norm, k, s, ceil)
            tl.backward(torch.from_numpy(g))
            np.testing.assert_allclose(ref.lp_pool2d(xa, norm, k, s, ceil),
                                       tl.detach().numpy(), rtol=1e-10)
            np.testing.assert_allclose(ref.lp_pool2d_backward(g, xa, norm, k, s, ceil),
                                       tx.grad.numpy(), rtol=1e-9)


@pytest.mark.parametrize("hw, out_hw", [((7, 9), (3, 4)), ((4, 6), (5, 7)), ((8, 8), (1, 1))])
def test_adaptive_against_torch(hw, out_hw, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((2, 3) + hw)
    x[0, 0] = np.round(x[0, 0])
    tx = torch.from_numpy(x).requires_grad_()
    ta = F.adaptive_avg_pool2d(tx, out_hw)
    g = rng.standard_normal(ta.shape)
    ta.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ref.adaptive_avg_pool2d(x, out_hw), ta.detach().numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(ref.adaptive_avg_pool2d_backward(g, x.shape),
                               tx.grad.numpy(), rtol=1e-12)
    to, ti = F.adaptive_max_pool2d(torch.from_numpy(x), out_hw, return_indices=True)
    o, i = ref.adaptive_max_pool2d(x, out_hw)
    assert np.array_equal(o, to.numpy()) and np.array_equal(i, ti.numpy())
