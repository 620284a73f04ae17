"""linear, cross_entropy, nll_loss, mse_loss and l1_loss through the autograd tape: against
the NumPy reference, float64 gradcheck, every cross_entropy option, large-logit stability,
odd layouts, thread counts and argument validation."""
import itertools

import numpy as np
import pytest

import fastconv as fc
from fctest import assert_close
from fastconv.functional.linear import linear
from fastconv.functional.loss import cross_entropy, l1_loss, mse_loss, nll_loss
from fastconv.reference import linear as ref_linear
from fastconv.reference import loss as ref_loss

DTYPES = [np.float32, np.float64]


# ------------------------------------------------------------------------------- linear

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,out_f", [((5, 7), 3), ((2, 3, 7), 4), ((7,), 2),
                                           ((64, 40), 12), ((0, 7), 3), ((3, 0), 2),
                                           ((2, 2, 2, 9), 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_reference(x_shape, out_f, bias, dtype, rng):
    in_f = x_shape[-1]
    x = fc.Tensor(rng.standard_normal(x_shape).astype(dtype), requires_grad=True)
    w = fc.Tensor(rng.standard_normal((out_f, in_f)).astype(dtype), requires_grad=True)
    b = fc.Tensor(rng.standard_normal(out_f).astype(dtype), requires_grad=True) if bias else None
    y = linear(x, w, b)
    assert y.dtype == dtype and y.shape == x_shape[:-1] + (out_f,)
    assert_close(y.data, ref_linear.linear(x.data, w.data, b.data if bias else None), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    y.backward(g)
    assert_close(x.grad, ref_linear.linear_backward_input(g, w.data), dtype)
    assert_close(w.grad, ref_linear.linear_backward_weight(g, x.data), dtype)
    if bias:
        assert_close(b.grad, ref_linear.linear_backward_bias(g), dtype)


def test_linear_gradcheck(rng):
    x = fc.Tensor(rng.standard_normal((2, 3, 5)), requires_grad=True)
    w = fc.Tensor(rng.standard_normal((4, 5)), requires_grad=True)
    b = fc.Tensor(rng.standard_normal(4), requires_grad=True)
    assert fc.gradcheck(lambda x, w, b: linear(x, w, b), [x, w, b])
    assert fc.gradcheck(lambda x, w: linear(x, w), [x, w])


def test_linear_odd_layouts_and_threads(rng):
    x0 = rng.standard_normal((33, 20)).astype(np.float32)
    w0 = rng.standard_normal((7, 20)).astype(np.float32)
    b0 = rng.standard_normal(7).astype(np.float32)
    expected = linear(x0, w0, b0).data
    ro = x0.copy()
    ro.setflags(write=False)
    layouts = [(np.asfortranarray(x0), w0), (x0, np.asfortranarray(w0)), (ro, w0),
               (np.repeat(x0, 2, axis=1)[:, ::2], w0.T.copy().T)]
    for x, w in layouts:
        assert np.array_equal(linear(x, w, np.broadcast_to(b0, (7,))).data, expected)
    old = fc.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            fc.set_num_threads(n)
            xt = fc.Tensor(x0, requires_grad=True)
            wt = fc.Tensor(w0, requires_grad=True)
            y = linear(xt, wt, b0)
            (y * y).sum().backward()
            outs.append((y.data, xt.grad, wt.grad))
    finally:
        fc.set_num_threads(old)
    for o in outs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(o, outs[0]))


def test_linear_validation():
    x32, w32 = np.ones((4, 20), np.float32), np.ones((3, 20), np.float32)
    with pytest.raises(ValueError, match=r"expected input's last dimension == weight.shape\[1\] "
                                         r"\(20\), got 30"):
        linear(np.ones((4, 30), np.float32), w32)
    with pytest.raises(TypeError, match="input=float32, weight=float64"):
        linear(x32, w32.astype(np.float64))
    with pytest.raises(TypeError, match="bias=float64"):
        linear(x32, w32, np.ones(3))
    with pytest.raises(TypeError, match="expected input to be float32 or float64, got int64"):
        linear(np.ones((4, 20), np.int64), w32)
    with pytest.raises(ValueError, match="expected weight to be 2-D"):
        linear(x32, np.ones(20, np.float32))
    with pytest.raises(ValueError, match=r"expected bias of shape \(3,\), got \(4,\)"):
        linear(x32, w32, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="0-D input"):
        linear(np.float32(1.0), np.ones((3, 1), np.float32))


# ------------------------------------------------------------------------ cross entropy

def _ce_case(rng, shape, dtype, with_weight, ignore):
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    c = shape[1] if len(shape) > 1 else shape[0]
    t_shape = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    t = rng.integers(0, c, t_shape)
    if ignore is not None and t.ndim:
        t.flat[::3] = ignore
    w = (rng.random(c) + 0.5).astype(dtype) if with_weight else None
    return x, t, w


CE_OPTIONS = list(itertools.product(["mean", "sum", "none"], [0.0, 0.1, 1.0], [False, True],
                                    [None, -100, 2]))


@pytest.mark.parametrize("reduction,eps,with_weight,ignore", CE_OPTIONS)
def test_cross_entropy_all_options_match_reference(reduction, eps, with_weight, ignore, rng):
    for shape, dtype in [((6, 5), np.float64), ((3, 4, 2, 3), np.float32), ((4,), np.float64)]:
        x, t, w = _ce_case(rng, shape, dtype, with_weight, ignore)
        kw = dict(weight=w, reduction=reduction, label_smoothing=eps,
                  ignore_index=-100 if ignore is None else ignore)
        xt = fc.Tensor(x, requires_grad=True)
        y = cross_entropy(xt, t, **kw)
        assert y.dtype == dtype
        assert y.shape == (t.shape if reduction == "none" else ())
        assert_close(y.data, ref_loss.cross_entropy(x.astype(np.float64), t, **kw), dtype)
        g = rng.standard_normal(y.shape).astype(dtype)
        y.backward(g)
        assert_close(xt.grad, ref_loss.cross_entropy_backward(g, x.astype(np.float64), t,
                                                              **kw), dtype)


@pytest.mark.parametrize("reduction,eps", [("mean", 0.0), ("mean", 0.3), ("sum", 0.2),
                                           ("none", 0.0), ("none", 0.4)])
def test_cross_entropy_gradcheck_input_and_weight(reduction, eps, rng):
    x = fc.Tensor(rng.standard_normal((5, 4)), requires_grad=True)
    w = fc.Tensor(rng.random(4) + 0.5, requires_grad=True)
    t = np.array([0, 3, -100, 1, 3])
    assert fc.gradcheck(lambda x, w: cross_entropy(x, t, w, reduction=reduction,
                                                   label_smoothing=eps), [x, w])
    x3 = fc.Tensor(rng.standard_normal((2, 3, 2, 2)), requires_grad=True)
    t3 = rng.integers(0, 3, (2, 2, 2))
    assert fc.gradcheck(lambda x: cross_entropy(x, t3, reduction=reduction,
                                                label_smoothing=eps), [x3])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_cross_entropy_probability_targets(reduction, eps, rng):
    x = fc.Tensor(rng.standard_normal((4, 3, 2)), requires_grad=True)
    q = rng.random((4, 3, 2))
    q /= q.sum(axis=1, keepdims=True)
    qt = fc.Tensor(q, requires_grad=True)
    w = fc.Tensor(rng.random(3) + 0.5, requires_grad=True)
    y = cross_entropy(x, qt, w, reduction=reduction, label_smoothing=eps)
    assert_close(y.data, ref_loss.cross_entropy(x.data, q, w.data, reduction=reduction,
                                                label_smoothing=eps))
    assert fc.gradcheck(lambda x, q, w: cross_entropy(x, q, w, reduction=reduction,
                                                      label_smoothing=eps), [x, qt, w])


def test_cross_entropy_one_hot_probabilities_equal_indices(rng):
    x = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, 6)
    a = cross_entropy(x, t, label_smoothing=0.2).data
    b = cross_entropy(x, np.eye(5)[t], label_smoothing=0.2).data
    assert_close(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0], [0.0, 1e4, 1e4], [-1e4, -1e4, -1e4]], dtype)
    t = np.array([1, 2, 0])
    xt = fc.Tensor(x, requires_grad=True)
    y = cross_entropy(xt, t, reduction="none", label_smoothing=0.1)
    assert np.all(np.isfinite(y.data))
    assert_close(y.data, ref_loss.cross_entropy(x.astype(np.float64), t, reduction="none",
                                                label_smoothing=0.1), dtype)
    assert_close(y.data[0], 0.9 * 2e4 + 0.1 / 3 * 3e4, dtype)   # log p = (0, -2e4, -1e4)
    y.sum().backward()
    assert np.all(np.isfinite(xt.grad))


def test_cross_entropy_all_ignored_mean_is_nan_with_zero_grad():
    x = fc.Tensor(np.zeros((2, 3)), requires_grad=True)
    y = cross_entropy(x, np.array([-100, -100]), label_smoothing=0.3)
    assert np.isnan(y.data)
    y.backward()
    assert np.array_equal(x.grad, np.zeros((2, 3)))


def test_cross_entropy_odd_layouts(rng):
    x0 = rng.standard_normal((6, 4, 3)).astype(np.float32)
    t0 = rng.integers(0, 4, (6, 3))
    expected = cross_entropy(x0, t0, reduction="none").data
    ro = x0.copy()
    ro.setflags(write=False)
    for x, t in [(np.asfortranarray(x0), np.asfortranarray(t0)), (ro, t0[:, ::-1][:, ::-1]),
                 (np.repeat(x0, 2, axis=2)[..., ::2], t0.astype(np.int32))]:
        assert np.array_equal(cross_entropy(x, t, reduction="none").data, expected)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"target": np.array([0.0, 1.0])}, ValueError, "expected float \\(class-probability\\) "
                                                   "target of the input's shape"),
    ({"target": np.array([True, False])}, TypeError, "expected target to be an integer array"),
    ({"target": np.array([0, 5])}, IndexError, r"expected target class indices in \[0, 2\] "
                                               r"\(or ignore_index=-100\), got 5"),
    ({"target": np.array([-1, 0])}, IndexError, "got -1"),
    ({"target": np.array([0, 1, 2])}, ValueError, r"expected target of shape \(2,\)"),
    ({"target": np.array([[0], [1]])}, ValueError, r"expected target of shape \(2,\)"),
    ({"reduction": "avg"}, ValueError, "expected reduction to be one of \\('none', 'mean', "
                                       "'sum'\\), got 'avg'"),
    ({"label_smoothing": 1.5}, ValueError, r"expected label_smoothing in \[0, 1\], got 1.5"),
    ({"label_smoothing": -0.1}, ValueError, r"expected label_smoothing in \[0, 1\]"),
    ({"weight": np.ones(4)}, ValueError, r"expected weight of shape \(3,\)"),
    ({"weight": np.ones(3, np.float32)}, TypeError, "input=float64, weight=float32"),
    ({"ignore_index": 1.5}, TypeError, "expected ignore_index to be an int"),
])
def test_cross_entropy_validation(kwargs, exc, match):
    args = {"input": np.zeros((2, 3)), "target": np.array([0, 2])}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        cross_entropy(**args)


def test_cross_entropy_ignore_index_may_be_out_of_range():
    y = cross_entropy(np.zeros((2, 3)), np.array([7, 1]), ignore_index=7)
    assert_close(y.data, np.log(3))


def test_cross_entropy_validation_of_input():
    with pytest.raises(TypeError, match="expected input to be float32 or float64"):
        cross_entropy(np.zeros((2, 3), np.int64), np.array([0, 1]))
    with pytest.raises(ValueError, match="0-D input"):
        cross_entropy(np.float64(1.0), np.array(0))
    with pytest.raises(ValueError, match="at least one class"):
        cross_entropy(np.zeros((2, 0)), np.array([0, 0]))


# ---------------------------------------------------------------------------- nll_loss

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_weight", [False, True])
def test_nll_loss_matches_reference_and_gradcheck(reduction, with_weight, rng):
    lp = ref_loss.log_softmax(rng.standard_normal((5, 4, 2)))
    t = rng.integers(0, 4, (5, 2))
    t[0, 0] = -100
    w = rng.random(4) + 0.5 if with_weight else None
    x = fc.Tensor(lp, requires_grad=True)
    y = nll_loss(x, t, w, reduction=reduction)
    assert_close(y.data, ref_loss.nll_loss(lp, t, w, reduction=reduction))
    g = rng.standard_normal(y.shape)
    y.backward(g)
    assert_close(x.grad, ref_loss.nll_loss_backward(g, lp, t, w, reduction=reduction))
    wt = fc.Tensor(w, requires_grad=True) if with_weight else None
    inputs = [fc.Tensor(lp, requires_grad=True)] + ([wt] if with_weight else [])
    assert fc.gradcheck(lambda x, *w: nll_loss(x, t, *w, reduction=reduction), inputs)


def test_cross_entropy_is_nll_of_log_softmax(rng):
    x = rng.standard_normal((7, 5))
    t = rng.integers(0, 5, 7)
    w = rng.random(5) + 0.5
    assert_close(cross_entropy(x, t, w).data,
                 nll_loss(ref_loss.log_softmax(x), t, w).data)


def test_nll_loss_validation():
    with pytest.raises(TypeError, match="expected target to be an integer array"):
        nll_loss(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(IndexError, match=r"in \[0, 2\].*got 3"):
        nll_loss(np.zeros((2, 3)), np.array([3, 0]))
    with pytest.raises(ValueError, match="expected reduction to be one of"):
        nll_loss(np.zeros((2, 3)), np.array([1, 0]), reduction="max")


# ------------------------------------------------------------------------ mse, l1

@pytest.mark.parametrize("fn,ref_fn,ref_grad", [(mse_loss, ref_loss.mse_loss,
                                                 ref_loss.mse_loss_backward),
                                                (l1_loss, ref_loss.l1_loss,
                                                 ref_loss.l1_loss_backward)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_losses_match_reference(fn, ref_fn, ref_grad, reduction, dtype, rng):
    x = fc.Tensor(rng.standard_normal((3, 4, 2)).astype(dtype), requires_grad=True)
    tgt = fc.Tensor(rng.standard_normal((3, 4, 2)).astype(dtype), requires_grad=True)
    y = fn(x, tgt, reduction=reduction)
    assert y.dtype == dtype
    assert_close(y.data, ref_fn(x.data, tgt.data, reduction), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    y.backward(g)
    gx = ref_grad(g, x.data, tgt.data, reduction)
    assert_close(x.grad, gx, dtype)
    assert_close(tgt.grad, -gx, dtype)


@pytest.mark.parametrize("fn", [mse_loss, l1_loss])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pointwise_losses_gradcheck(fn, reduction, rng):
    x = fc.Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    t = fc.Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    assert fc.gradcheck(lambda x, t: fn(x, t, reduction=reduction), [x, t])


def test_mse_loss_validation_and_promotion():
    with pytest.raises(ValueError, match=r"expected target of the input's shape \(3, 4\), got "
                                         r"\(3, 1\)"):
        mse_loss(np.zeros((3, 4)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="expected reduction to be one of"):
        mse_loss(np.zeros(3), np.zeros(3), reduction="batchmean")
    with pytest.raises(TypeError, match="expected target to be float32 or float64"):
        l1_loss(np.zeros(3), np.zeros(3, np.int64))
    assert mse_loss(np.zeros(3, np.float32), np.ones(3, np.float64)).dtype == np.float64
    assert np.isnan(mse_loss(np.zeros((0, 3)), np.zeros((0, 3))).data)
