"""fastconv.reference.{linear, loss, upsample} against brute-force loops and central
differences, and against PyTorch when it is installed (skipped cleanly otherwise)."""
import itertools
import math

import numpy as np
import pytest

from fctest import assert_close
from fastconv.reference import linear as L
from fastconv.reference import loss as LS
from fastconv.reference import upsample as U


def _numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f at x (float64)."""
    x = x.astype(np.float64).copy()
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f(x)
        x[i] = old - eps
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


# ----------------------------------------------------------------- brute force: linear

def test_linear_against_loops(rng):
    x = rng.standard_normal((2, 3, 4))
    w = rng.standard_normal((5, 4))
    b = rng.standard_normal(5)
    y = L.linear(x, w, b)
    g = rng.standard_normal(y.shape)
    gx, gw, gb = np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)
    for i, j, o in itertools.product(range(2), range(3), range(5)):
        assert math.isclose(y[i, j, o], sum(x[i, j, k] * w[o, k] for k in range(4)) + b[o],
                            rel_tol=1e-12, abs_tol=1e-12)
        for k in range(4):
            gx[i, j, k] += g[i, j, o] * w[o, k]
            gw[o, k] += g[i, j, o] * x[i, j, k]
        gb[o] += g[i, j, o]
    assert_close(L.linear_backward_input(g, w), gx)
    assert_close(L.linear_backward_weight(g, x), gw)
    assert_close(L.linear_backward_bias(g), gb)


def test_cat_and_add_backward_against_loops(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 1))
    g = rng.standard_normal((2, 4))
    ga, gb = L.cat_backward(g, [3, 1], dim=1)
    assert np.array_equal(np.concatenate([ga, gb], axis=1), g)
    g2 = rng.standard_normal((2, 3))
    ga, gb = L.add_backward(g2, a.shape, b.shape, alpha=3)
    assert np.array_equal(ga, g2)
    assert_close(gb, [[3 * sum(g2[0])], [3 * sum(g2[1])]])


# ------------------------------------------------------------------ brute force: losses

def _ce_loop(x, t, w, ignore_index, reduction, eps):
    """PyTorch's formula, one sample at a time with Python floats; x (N, C), t (N,)."""
    n, c = x.shape
    w = np.ones(c) if w is None else w
    losses, denom = [], 0.0
    for i in range(n):
        if t[i] == ignore_index:
            losses.append(0.0)
            continue
        m = max(x[i])
        lse = m + math.log(sum(math.exp(v - m) for v in x[i]))
        logp = [v - lse for v in x[i]]
        nll = -w[t[i]] * logp[t[i]]
        smooth = -sum(w[k] * logp[k] for k in range(c))
        losses.append((1 - eps) * nll + eps / c * smooth)
        denom += w[t[i]]
    if reduction == "none":
        return np.array(losses)
    return sum(losses) if reduction == "sum" else (sum(losses) / denom if denom else math.nan)


@pytest.mark.parametrize("reduction,eps,with_weight,ignore",
                         list(itertools.product(["mean", "sum", "none"], [0.0, 0.3],
                                                [False, True], [-100, 1])))
def test_cross_entropy_against_loops_and_differences(reduction, eps, with_weight, ignore,
                                                     rng):
    x = rng.standard_normal((6, 4)) * 2
    t = rng.integers(0, 4, 6)
    w = rng.random(4) + 0.5 if with_weight else None
    kw = dict(weight=w, ignore_index=ignore, reduction=reduction, label_smoothing=eps)
    assert_close(LS.cross_entropy(x, t, **kw), _ce_loop(x, t, w, ignore, reduction, eps))
    g = rng.standard_normal(6) if reduction == "none" else np.float64(1.3)
    numeric = _numeric_grad(lambda z: np.sum(g * LS.cross_entropy(z, t, **kw)), x)
    assert_close(LS.cross_entropy_backward(g, x, t, **kw), numeric, tol=1e-7)


def test_cross_entropy_probability_targets_against_differences(rng):
    x = rng.standard_normal((2, 3, 2))
    q = rng.random((2, 3, 2))
    q /= q.sum(axis=1, keepdims=True)
    w = rng.random(3) + 0.5
    for red in ("mean", "sum"):
        kw = dict(weight=w, reduction=red, label_smoothing=0.2)
        numeric = _numeric_grad(lambda z: LS.cross_entropy(z, q, **kw), x)
        assert_close(LS.cross_entropy_backward(1.0, x, q, **kw), numeric, tol=1e-7)


def test_nll_and_pointwise_losses_against_differences(rng):
    lp = LS.log_softmax(rng.standard_normal((5, 3)))
    t = np.array([0, 2, -100, 1, 1])
    w = rng.random(3) + 0.5
    numeric = _numeric_grad(lambda z: LS.nll_loss(z, t, w), lp)
    assert_close(LS.nll_loss_backward(1.0, lp, t, w), numeric, tol=1e-7)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    assert_close(LS.mse_loss(x, y), sum((a - b) ** 2 for a, b in zip(x.flat, y.flat)) / 12)
    for fwd, bwd in [(LS.mse_loss, LS.mse_loss_backward), (LS.l1_loss, LS.l1_loss_backward)]:
        numeric = _numeric_grad(lambda z: fwd(z, y), x)
        assert_close(bwd(1.0, x, y), numeric, tol=1e-7)


# ---------------------------------------------------------------- brute force: upsample

def _nearest_src(o, n_in, n_out, sf):
    if n_out == n_in:
        return o
    if n_out == 2 * n_in:
        return o // 2
    ratio = np.float32(1.0 / sf) if sf else np.float32(n_in) / np.float32(n_out)
    return min(int(math.floor(np.float32(o) * ratio)), n_in - 1)


def _linear_src(o, n_in, n_out, align_corners, sf):
    if n_out == n_in:
        return o, o, 0.0
    if align_corners:
        src = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        ratio = 1.0 / sf if sf else n_in / n_out
        src = max(ratio * (o + 0.5) - 0.5, 0.0)
    i0 = min(int(math.floor(src)), n_in - 1)
    return i0, min(i0 + 1, n_in - 1), min(max(src - i0, 0.0), 1.0)


@pytest.mark.parametrize("h,w,oh,ow,sf", [(3, 4, 6, 8, (2, 2)), (5, 5, 3, 7, None),
                                          (4, 6, 6, 4, (1.5, 0.7)), (2, 3, 2, 9, None),
                                          (1, 1, 3, 2, None)])
def test_upsample_against_loops(h, w, oh, ow, sf, rng):
    x = rng.standard_normal((2, 2, h, w))
    sh, sw = sf if sf else (None, None)
    near = U.upsample_nearest2d(x, (oh, ow), sf)
    for i, j in itertools.product(range(oh), range(ow)):
        src = x[:, :, _nearest_src(i, h, oh, sh), _nearest_src(j, w, ow, sw)]
        assert np.array_equal(near[:, :, i, j], src)
    for ac in (False, True):
        bil = U.upsample_bilinear2d(x, (oh, ow), ac, sf)
        for i, j in itertools.product(range(oh), range(ow)):
            h0, h1, lh = _linear_src(i, h, oh, ac, sh)
            w0, w1, lw = _linear_src(j, w, ow, ac, sw)
            v = ((1 - lh) * ((1 - lw) * x[:, :, h0, w0] + lw * x[:, :, h0, w1])
                 + lh * ((1 - lw) * x[:, :, h1, w0] + lw * x[:, :, h1, w1]))
            assert_close(bil[:, :, i, j], v)


@pytest.mark.parametrize("ac", [False, True])
def test_upsample_backward_is_the_adjoint(ac, rng):
    x = rng.standard_normal((1, 2, 4, 5))
    g = rng.standard_normal((1, 2, 7, 3))
    for y, gx in [(U.upsample_nearest2d(x, (7, 3)),
                   U.upsample_nearest2d_backward(g, x.shape)),
                  (U.upsample_bilinear2d(x, (7, 3), ac),
                   U.upsample_bilinear2d_backward(g, x.shape, ac))]:
        assert math.isclose(np.sum(y * g), np.sum(x * gx), rel_tol=1e-12)


def test_pixel_shuffle_against_loops(rng):
    r = 2
    x = rng.standard_normal((2, 8, 3, 2))
    y = U.pixel_shuffle(x, r)
    for n, c, h, w, i, j in itertools.product(range(2), range(2), range(3), range(2),
                                              range(r), range(r)):
        assert y[n, c, h * r + i, w * r + j] == x[n, c * r * r + i * r + j, h, w]
    assert np.array_equal(U.pixel_unshuffle(y, r), x)


# ------------------------------------------------------------------------- vs PyTorch

def _close_or_both_nan(actual, expected):
    """assert_close, where nan (an all-ignored mean) must be nan in both."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    assert_close(np.nan_to_num(actual), np.nan_to_num(expected))


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny ops: threads only add overhead on a shared machine
    yield torch
    torch.set_num_threads(old)


def test_linear_vs_torch(torch, rng):
    x = rng.standard_normal((2, 5, 7))
    w = rng.standard_normal((3, 7))
    b = rng.standard_normal(3)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.linear(xt, wt, bt)
    g = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(g))
    assert_close(L.linear(x, w, b), yt.detach().numpy())
    assert_close(L.linear_backward_input(g, w), xt.grad.numpy())
    assert_close(L.linear_backward_weight(g, x), wt.grad.numpy())
    assert_close(L.linear_backward_bias(g), bt.grad.numpy())


@pytest.mark.parametrize("reduction,eps,with_weight,ignore",
                         list(itertools.product(["mean", "sum", "none"], [0.0, 0.1, 1.0],
                                                [False, True], [-100, 2])))
def test_cross_entropy_vs_torch(torch, reduction, eps, with_weight, ignore, rng):
    F = torch.nn.functional
    for shape in [(7, 5), (3, 5, 2, 2), (5,)]:
        x = rng.standard_normal(shape) * 3
        t = rng.integers(0, 5, (shape[0],) + shape[2:] if len(shape) > 1 else ())
        w = rng.random(5) + 0.5 if with_weight else None
        kw = dict(ignore_index=ignore, reduction=reduction, label_smoothing=eps)
        xt = torch.tensor(x, requires_grad=True)
        yt = F.cross_entropy(xt, torch.tensor(t), None if w is None else torch.tensor(w), **kw)
        g = rng.standard_normal(yt.shape)
        yt.backward(torch.tensor(g))
        _close_or_both_nan(LS.cross_entropy(x, t, w, **kw), yt.detach().numpy())
        assert_close(LS.cross_entropy_backward(g, x, t, w, **kw), xt.grad.numpy())
        # class-probability targets (no ignore_index there)
        q = rng.random(shape)
        q /= q.sum(axis=1 if len(shape) > 1 else 0, keepdims=True)
        kw.pop("ignore_index")
        xt = torch.tensor(x, requires_grad=True)
        yt = F.cross_entropy(xt, torch.tensor(q), None if w is None else torch.tensor(w), **kw)
        yt.backward(torch.tensor(g))
        assert_close(LS.cross_entropy(x, q, w, **kw), yt.detach().numpy())
        assert_close(LS.cross_entropy_backward(g, x, q, w, **kw), xt.grad.numpy())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_mse_l1_vs_torch(torch, reduction, rng):
    F = torch.nn.functional
    lp = LS.log_softmax(rng.standard_normal((6, 4)))
    t = np.array([0, 3, -100, 1, 2, 2])
    w = rng.random(4) + 0.5
    lt = torch.tensor(lp, requires_grad=True)
    yt = F.nll_loss(lt, torch.tensor(t), torch.tensor(w), reduction=reduction)
    g = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(g))
    assert_close(LS.nll_loss(lp, t, w, reduction=reduction), yt.detach().numpy())
    assert_close(LS.nll_loss_backward(g, lp, t, w, reduction=reduction), lt.grad.numpy())
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    for fwd, bwd, tf in [(LS.mse_loss, LS.mse_loss_backward, F.mse_loss),
                         (LS.l1_loss, LS.l1_loss_backward, F.l1_loss)]:
        xt = torch.tensor(x, requires_grad=True)
        out = tf(xt, torch.tensor(y), reduction=reduction)
        g = rng.standard_normal(out.shape)
        out.backward(torch.tensor(g))
        assert_close(fwd(x, y, reduction), out.detach().numpy())
        assert_close(bwd(g, x, y, reduction), xt.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw,kwargs", [((5, 7), {"scale_factor": 2}),
                                       ((4, 6), {"scale_factor": 3}),
                                       ((6, 5), {"scale_factor": 1.5}),
                                       ((10, 9), {"scale_factor": 0.7}),
                                       ((7, 8), {"scale_factor": (2.5, 0.5)}),
                                       ((13, 11), {"scale_factor": 1.3}),
                                       ((5, 7), {"size": (10, 14)}),
                                       ((5, 7), {"size": (3, 11)}),
                                       ((1, 1), {"size": (4, 3)}),
                                       ((6, 4), {"size": (13, 1)})])
@pytest.mark.parametrize("mode,ac", [("nearest", None), ("bilinear", False),
                                     ("bilinear", True)])
def test_interpolate_vs_torch(torch, hw, kwargs, mode, ac, dtype, rng):
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.interpolate(xt, mode=mode, align_corners=ac, **kwargs)
    g = rng.standard_normal(yt.shape).astype(dtype)
    yt.backward(torch.tensor(g))
    size = tuple(yt.shape[2:])
    sf = kwargs.get("scale_factor")
    if mode == "nearest":
        assert np.array_equal(U.upsample_nearest2d(x, size, sf), yt.detach().numpy())
        gx = U.upsample_nearest2d_backward(g, x.shape, sf)
    else:
        assert_close(U.upsample_bilinear2d(x, size, ac, sf), yt.detach().numpy(), dtype)
        gx = U.upsample_bilinear2d_backward(g, x.shape, ac, sf)
    assert_close(gx, xt.grad.numpy(), dtype)


@pytest.mark.parametrize("shape,r", [((2, 12, 3, 5), 2), ((1, 18, 2, 2), 3), ((4, 3, 3), 1)])
def test_pixel_shuffle_vs_torch(torch, shape, r, rng):
    x = rng.standard_normal(shape)
    y = torch.nn.functional.pixel_shuffle(torch.tensor(x), r).numpy()
    assert np.array_equal(U.pixel_shuffle(x, r), y)
    assert np.array_equal(U.pixel_unshuffle(y, r),
                          torch.nn.functional.pixel_unshuffle(torch.tensor(y), r).numpy())
