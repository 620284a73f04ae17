"""Odd memory layouts give exactly the contiguous result, and NaN/Inf propagate as in
PyTorch.

Layouts: Fortran order, a strided view (every other element of a larger array), negative
strides, read-only, broadcast (zero strides) and a transposed view; applied to every array
operand at once, forward and backward, bit for bit.
Non-finite values: inputs with NaN, +inf and -inf sprinkled in, forward and gradients compared
with ``torch`` (skipped when it is not installed).
"""
import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F

LAYOUTS = ("fortran", "strided", "negative", "readonly", "broadcast", "transposed")


def odd(a, layout):
    """``a``'s values (or, for broadcast, values derived from it) in another layout."""
    if a.ndim == 0:
        return a
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros(tuple(2 * s + 1 for s in a.shape), a.dtype)
        view = big[(slice(1, None, 2),) * a.ndim]
        view[...] = a
        return view
    if layout == "negative":
        return np.flip(np.ascontiguousarray(np.flip(a)))
    if layout == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if layout == "broadcast":
        return np.broadcast_to(a[:1], a.shape)
    return np.ascontiguousarray(a.T).T      # transposed view: strides reversed


def _w(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


X4 = _w(2, 4, 7, 6, seed=1)
# name -> (fn(**arrays), arrays); every array is given the layout, the float ones get grads
OPS = {
    "conv2d-direct": (lambda x, w, b: F.conv2d(x, w, b, 2, 1, algorithm="direct"),
                      dict(x=X4, w=_w(3, 4, 3, 3), b=_w(3))),
    "conv2d-im2col": (lambda x, w, b: F.conv2d(x, w, b, 1, 1, 2, 2, algorithm="im2col"),
                      dict(x=X4, w=_w(6, 2, 3, 2), b=_w(6)), ),
    "conv2d-depthwise": (lambda x, w, b: F.conv2d(x, w, b, 1, "same", groups=4,
                                                  algorithm="depthwise"),
                         dict(x=X4, w=_w(8, 1, 3, 3), b=_w(8))),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1),
                         dict(x=X4, w=_w(4, 3, 3, 3), b=_w(3))),
    "depthwise_separable": (lambda x, dw, pw: F.depthwise_separable_conv2d(x, dw, pw,
                                                                           padding=1),
                            dict(x=X4, dw=_w(4, 1, 3, 3), pw=_w(5, 4, 1, 1))),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True), dict(x=X4)),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), dict(x=X4)),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (3, 4)), dict(x=X4)),
    "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, 3, return_indices=True),
                            dict(x=X4)),
    "lp_pool2d": (lambda x: F.lp_pool2d(x, 2, 2), dict(x=X4)),
    "spatial_pyramid_pool": (lambda x: F.spatial_pyramid_pool(x, (1, 2)), dict(x=X4)),
    "batch_norm-eval": (lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b),
                        dict(x=X4, w=_w(4), b=_w(4), rm=_w(4), rv=np.abs(_w(4)) + 1)),
    "batch_norm-train-2d": (lambda x, w, b: F.batch_norm(x, None, None, w, b, True),
                            dict(x=_w(9, 4), w=_w(4), b=_w(4))),
    "relu": (F.relu, dict(input=X4)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), dict(x=X4)),
    "elu": (F.elu, dict(input=X4)),
    "prelu": (F.prelu, dict(input=X4, weight=_w(4))),
    "sigmoid": (F.sigmoid, dict(input=X4)),
    "tanh": (F.tanh, dict(input=X4)),
    "softmax": (lambda x: F.softmax(x, 1), dict(x=X4)),
    "log_softmax": (lambda x: F.log_softmax(x, -1), dict(x=X4)),
    "dropout": (lambda x: (fc.manual_seed(3), F.dropout(x, 0.4))[1], dict(x=X4)),
    "linear": (F.linear, dict(input=_w(3, 5, 6), weight=_w(4, 6), bias=_w(4))),
    "interpolate-nearest": (lambda x: F.interpolate(x, scale_factor=(2, 1.5)), dict(x=X4)),
    "interpolate-bilinear": (lambda x: F.interpolate(x, size=(9, 4), mode="bilinear",
                                                     align_corners=True), dict(x=X4)),
    "pixel_shuffle": (lambda x: F.pixel_shuffle(x, 2), dict(x=X4)),
    "pixel_unshuffle": (lambda x: F.pixel_unshuffle(x[:, :, :6], 2), dict(x=X4)),
    "cross_entropy": (lambda x, w: F.cross_entropy(x, np.array([0, 3, 1]), w,
                                                   label_smoothing=0.1),
                      dict(x=_w(3, 4), w=np.abs(_w(4)))),
    "cross_entropy-prob": (lambda x, t: F.cross_entropy(x, t), dict(x=_w(3, 4),
                                                                    t=np.abs(_w(3, 4)))),
    "mse_loss": (F.mse_loss, dict(input=_w(3, 4), target=_w(3, 4, seed=2))),
    "l1_loss": (F.l1_loss, dict(input=_w(3, 4), target=_w(3, 4, seed=2))),
    "flatten": (lambda x: F.flatten(x, 1, 2), dict(x=X4)),
    "cat": (lambda a, b: F.cat([a, b], 1), dict(a=X4, b=_w(2, 3, 7, 6))),
    "add": (lambda a, b: F.add(a, b, alpha=2), dict(a=X4, b=_w(7, 6))),
}


def _run(fn, arrays, as_tensor):
    """Forward, then backward of a fixed grad_out; (outputs, gradients) as ndarrays."""
    inputs = {k: fc.Tensor(v, requires_grad=True) if as_tensor else v
              for k, v in arrays.items()}
    out = fn(**inputs)
    extra = ()
    if isinstance(out, tuple):
        out, *extra = out
    grads = []
    if as_tensor:
        gy = np.random.default_rng(9).standard_normal(out.shape).astype(out.dtype)
        out.backward(gy)
        grads = [inputs[k].grad for k in arrays]
    return [out.data, *extra], grads


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", sorted(OPS))
def test_odd_layout_gives_the_contiguous_result(name, layout):
    """Inside Tensors (a Tensor keeps the array it is given, so the ops see the odd layout,
    and the gradients are checked too)."""
    fn, arrays = OPS[name]
    odd_arrays = {k: odd(v, layout) for k, v in arrays.items()}
    contiguous = {k: np.ascontiguousarray(v) for k, v in odd_arrays.items()}
    if layout not in ("broadcast",):
        for k in arrays:
            assert np.array_equal(contiguous[k], arrays[k])
    got = _run(fn, odd_arrays, True)
    want = _run(fn, contiguous, True)
    for g, w in zip(got[0] + got[1], want[0] + want[1]):
        if w is None:          # no gradient (running statistics)
            assert g is None
        else:
            assert np.array_equal(g, w, equal_nan=True)


@pytest.mark.parametrize("layout", ["strided", "negative", "fortran2d"])
def test_batch_norm_updates_odd_running_stats_in_place(layout):
    """Running statistics that are views (non-contiguous, negative strides) are updated in
    place exactly as contiguous ones; read-only ones are refused in training."""
    x = _w(6, 3, 4, 4)
    base_m, base_v = _w(3), np.abs(_w(3)) + 1
    if layout == "fortran2d":
        hold_m, hold_v = np.asfortranarray(np.stack([base_m] * 2)), \
            np.asfortranarray(np.stack([base_v] * 2))
        rm, rv = hold_m[0], hold_v[0]            # rows of a Fortran array: stride 2
    else:
        rm, rv = odd(base_m, layout), odd(base_v, layout)
    cm, cv = base_m.copy(), base_v.copy()
    y = F.batch_norm(x, rm, rv, training=True, momentum=0.3)
    y_ref = F.batch_norm(x, cm, cv, training=True, momentum=0.3)
    assert np.array_equal(y.data, y_ref.data)
    assert np.array_equal(rm, cm) and np.array_equal(rv, cv)
    assert not np.array_equal(cm, base_m)   # the update happened
    with pytest.raises(ValueError, match="running_mean to be writable"):
        F.batch_norm(x, odd(base_m, "readonly"), base_v.copy(), training=True)


# ----------------------------------------------------------------------------- NaN / Inf

def _sprinkle(shape, seed, k=3):
    """Normal values with k NaNs, k +infs and k -infs at random positions (float64)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    flat = x.reshape(-1)
    pos = rng.choice(flat.size, size=3 * k, replace=False)
    flat[pos[:k]], flat[pos[k:2 * k]], flat[pos[2 * k:]] = np.nan, np.inf, -np.inf
    return x


def _torch_ops(torch):
    T = torch.nn.functional
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 3, 3, 3))
    wd = rng.standard_normal((6, 1, 3, 3))
    wt = rng.standard_normal((3, 2, 3, 3))
    t = torch.tensor
    tgt = np.array([0, 1, 2, 3])
    # name -> (fastconv fn, torch fn, input shape, compare gradients)
    ops = {
        "conv_transpose2d": (lambda x: F.conv_transpose2d(x, wt, stride=2),
                             lambda x: T.conv_transpose2d(x, t(wt), stride=2), (2, 3, 6, 6),
                             True),
        "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: T.max_pool2d(x, 3, 2, 1),
                       (2, 3, 7, 7), True),
        "max_pool2d-indices": (lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True)[1],
                               lambda x: T.max_pool2d(x, 3, 2, 1, return_indices=True)[1],
                               (2, 3, 7, 7), False),
        "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, 3),
                                lambda x: T.adaptive_max_pool2d(x, 3), (2, 3, 7, 7), True),
        "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1), lambda x: T.avg_pool2d(x, 3, 2, 1),
                       (2, 3, 7, 7), True),
        "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, 3),
                                lambda x: T.adaptive_avg_pool2d(x, 3), (2, 3, 7, 7), True),
        # lp_pool2d's gradient at non-finite windows follows PyTorch's composite
        # (sign/relu/pow) derivatives, which fastconv does not copy: forward only
        "lp_pool2d": (lambda x: F.lp_pool2d(x, 2, 2), lambda x: T.lp_pool2d(x, 2, 2),
                      (2, 3, 7, 7), False),
        "lp_pool2d-inf": (lambda x: F.lp_pool2d(x, float("inf"), 2),
                          lambda x: T.lp_pool2d(x, float("inf"), 2), (2, 3, 7, 7), False),
        "batch_norm": (lambda x: F.batch_norm(x, None, None, training=True),
                       lambda x: T.batch_norm(x, None, None, training=True), (4, 3, 5, 5),
                       True),
        "relu": (F.relu, T.relu, (2, 3, 5, 5), True),
        "leaky_relu": (F.leaky_relu, T.leaky_relu, (2, 3, 5, 5), True),
        # PyTorch's ELU gradient at NaN differs between its vector and scalar paths
        "elu": (F.elu, T.elu, (2, 3, 5, 5), False),
        "sigmoid": (F.sigmoid, torch.sigmoid, (2, 3, 5, 5), True),
        "tanh": (F.tanh, torch.tanh, (2, 3, 5, 5), True),
        "softmax": (lambda x: F.softmax(x, 1), lambda x: T.softmax(x, 1), (2, 3, 5, 5), True),
        "log_softmax": (lambda x: F.log_softmax(x, 3), lambda x: T.log_softmax(x, 3),
                        (2, 3, 5, 5), True),
        "prelu": (lambda x: F.prelu(x, np.full(3, 0.25)),
                  lambda x: T.prelu(x, t(np.full(3, 0.25))), (2, 3, 5, 5), True),
        "interpolate-nearest": (lambda x: F.interpolate(x, scale_factor=2),
                                lambda x: T.interpolate(x, scale_factor=2), (2, 3, 5, 5), True),
        "interpolate-bilinear": (
            lambda x: F.interpolate(x, size=(7, 9), mode="bilinear"),
            lambda x: T.interpolate(x, size=(7, 9), mode="bilinear"), (2, 3, 5, 5), True),
        "pixel_shuffle": (lambda x: F.pixel_shuffle(x, 2), lambda x: T.pixel_shuffle(x, 2),
                          (2, 8, 3, 3), True),
        "linear": (lambda x: F.linear(x, w.reshape(4, -1)[:, :5]),
                   lambda x: T.linear(x, t(w.reshape(4, -1)[:, :5])), (4, 5), True),
        "cross_entropy": (lambda x: F.cross_entropy(x, tgt, reduction="none"),
                          lambda x: T.cross_entropy(x, t(tgt), reduction="none"), (4, 5),
                          True),
        "mse_loss": (lambda x: F.mse_loss(x, np.ones((4, 5))),
                     lambda x: T.mse_loss(x, t(np.ones((4, 5)))), (4, 5), True),
    }
    for alg in fc.conv_algorithms():
        if alg == "depthwise":
            ops["conv2d-depthwise"] = (
                lambda x: F.conv2d(x, wd, padding=1, groups=3, algorithm="depthwise"),
                lambda x: T.conv2d(x, t(wd), padding=1, groups=3), (2, 3, 6, 6), True)
        else:
            ops[f"conv2d-{alg}"] = (
                lambda x, alg=alg: F.conv2d(x, w, padding=1, algorithm=alg),
                lambda x: T.conv2d(x, t(w), padding=1), (2, 3, 6, 6), True)
    return ops


NONFINITE_OPS = ["conv2d-direct", "conv2d-im2col", "conv2d-depthwise", "conv2d-winograd",
                 "conv_transpose2d",
                 "max_pool2d", "max_pool2d-indices", "adaptive_max_pool2d", "avg_pool2d",
                 "adaptive_avg_pool2d", "lp_pool2d", "lp_pool2d-inf", "batch_norm", "relu",
                 "leaky_relu", "elu", "sigmoid", "tanh", "softmax", "log_softmax", "prelu",
                 "interpolate-nearest", "interpolate-bilinear", "pixel_shuffle", "linear",
                 "cross_entropy", "mse_loss"]


def _same_nonfinite(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{what}: NaN positions differ"
    fin = ~np.isnan(got)
    assert np.array_equal(np.isinf(got[fin]), np.isinf(want[fin])), f"{what}: inf positions"
    assert np.array_equal(got[np.isinf(got)], want[np.isinf(want)]), f"{what}: inf signs"
    both = np.isfinite(got)
    np.testing.assert_allclose(got[both], want[both], rtol=1e-9, atol=1e-9, err_msg=what)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", NONFINITE_OPS)
def test_nan_and_inf_propagate_as_in_pytorch(name, seed):
    torch = pytest.importorskip("torch")
    ops = _torch_ops(torch)
    assert set(NONFINITE_OPS) == set(ops)
    ours, theirs, shape, grads = ops[name]
    x = _sprinkle(shape, seed)
    xt = torch.tensor(x, requires_grad=grads)
    yt = theirs(xt)
    xf = fc.Tensor(x, requires_grad=grads)
    with np.errstate(all="ignore"):
        out = ours(xf)
    y = out.data if isinstance(out, fc.Tensor) else out
    _same_nonfinite(y, yt.detach().numpy(), "forward")
    assert np.isnan(y).any() or y.dtype.kind == "i"   # the NaNs reached the output
    if grads:
        gy = np.random.default_rng(seed).standard_normal(yt.shape)
        yt.backward(torch.tensor(gy))
        with np.errstate(all="ignore"):
            out.backward(gy)
        _same_nonfinite(xf.grad, xt.grad.numpy(), "gradient")


def test_max_pool_of_a_nan_window_is_nan_and_points_at_it():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 0] = np.nan
    x[0, 0, 0, 1] = np.inf
    x[0, 0, 3, 3] = -np.inf
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(y.data[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 4
    assert y.data[0, 0, 1, 1] == 0 and y.data[0, 0, 0, 1] == 0
    y = F.max_pool2d(np.full((1, 1, 2, 2), -np.inf, np.float32), 2)
    assert y.data.ravel()[0] == -np.inf
