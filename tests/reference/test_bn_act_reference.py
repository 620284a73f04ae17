"""fastconv.reference.batchnorm / .activations against brute force (explicit loops, float64
central differences) and, when installed, against PyTorch."""
import numpy as np
import pytest

from fctest import assert_close
from fastconv.reference import activations as ref_act
from fastconv.reference import batchnorm as ref_bn


def _brute_stats(x):
    """Per-channel mean and biased variance by explicit loops."""
    c = x.shape[1]
    mean, var = np.zeros(c), np.zeros(c)
    for ch in range(c):
        vals = [float(v) for v in np.moveaxis(x, 1, 0)[ch].ravel()]
        m = sum(vals) / len(vals)
        mean[ch] = m
        var[ch] = sum((v - m) ** 2 for v in vals) / len(vals)
    return mean, var


def _numeric_grad(f, x, gy, eps=1e-6):
    """d(sum(gy * f(x)))/dx by central differences."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = (gy * f(x)).sum()
        x[i] = old - eps
        fm = (gy * f(x)).sum()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


@pytest.mark.parametrize("shape", [(3, 2, 4), (2, 3, 2, 2), (5, 2)])
def test_batch_norm_reference_vs_brute_force(shape, rng):
    x = rng.standard_normal(shape) * 2 + 1
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    mean, var = _brute_stats(x)
    got_mean, got_var = ref_bn.batch_norm_stats(x)
    assert_close(got_mean, mean)
    assert_close(got_var, var)
    y, m, invstd = ref_bn.batch_norm_train(x, w, b, eps=1e-3)
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    expect = (x - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-3) \
        * w.reshape(bshape) + b.reshape(bshape)
    assert_close(y, expect)
    gy = rng.standard_normal(shape)
    gx, gw, gb = ref_bn.batch_norm_backward(gy, x, w, eps=1e-3)
    assert_close(gx, _numeric_grad(lambda t: ref_bn.batch_norm_train(t, w, b, 1e-3)[0],
                                   x.copy(), gy), tol=1e-6)
    assert_close(gw, _numeric_grad(lambda t: ref_bn.batch_norm_train(x, t, b, 1e-3)[0],
                                   w.copy(), gy), tol=1e-6)
    assert_close(gb, gy.sum(axis=(0,) + tuple(range(2, x.ndim))))
    rm, rv = np.zeros(shape[1]), np.ones(shape[1])
    ref_bn.update_running_stats(x, rm, rv, momentum=0.25)
    n = x.size // shape[1]
    assert_close(rm, 0.25 * mean)
    assert_close(rv, 0.75 + 0.25 * var * n / (n - 1))
    rm, rv = rng.standard_normal(shape[1]), rng.random(shape[1]) + 0.5
    gx, gw, _ = ref_bn.batch_norm_eval_backward(gy, x, rm, rv, w)
    assert_close(gx, _numeric_grad(lambda t: ref_bn.batch_norm_eval(t, rm, rv, w, b), x.copy(),
                                   gy), tol=1e-6)
    assert_close(gw, _numeric_grad(lambda t: ref_bn.batch_norm_eval(x, rm, rv, t, b), w.copy(),
                                   gy), tol=1e-6)


ACTS = {  # name: (forward, backward(gy, x, y))
    "relu": (ref_act.relu, lambda gy, x, y: ref_act.relu_backward(gy, x)),
    "leaky_relu": (lambda x: ref_act.leaky_relu(x, 0.1),
                   lambda gy, x, y: ref_act.leaky_relu_backward(gy, x, 0.1)),
    "elu": (lambda x: ref_act.elu(x, 1.5), lambda gy, x, y: ref_act.elu_backward(gy, x, 1.5)),
    "sigmoid": (ref_act.sigmoid, lambda gy, x, y: ref_act.sigmoid_backward(gy, y)),
    "tanh": (ref_act.tanh, lambda gy, x, y: ref_act.tanh_backward(gy, y)),
    "softmax": (lambda x: ref_act.softmax(x, 1),
                lambda gy, x, y: ref_act.softmax_backward(gy, y, 1)),
    "log_softmax": (lambda x: ref_act.log_softmax(x, 0),
                    lambda gy, x, y: ref_act.log_softmax_backward(gy, y, 0)),
}


@pytest.mark.parametrize("name", list(ACTS))
def test_activation_derivatives_vs_central_differences(name, rng):
    fwd, bwd = ACTS[name]
    x = rng.standard_normal((3, 4)) * 2
    x[np.abs(x) < 1e-3] = 0.5
    gy = rng.standard_normal(x.shape)
    assert_close(bwd(gy, x, fwd(x)), _numeric_grad(fwd, x.copy(), gy), tol=1e-6)


def test_prelu_derivatives_vs_central_differences(rng):
    x = rng.standard_normal((2, 3, 4))
    w = rng.random(3)
    gy = rng.standard_normal(x.shape)
    gx, gw = ref_act.prelu_backward(gy, x, w)
    assert_close(gx, _numeric_grad(lambda t: ref_act.prelu(t, w), x.copy(), gy), tol=1e-6)
    assert_close(gw, _numeric_grad(lambda t: ref_act.prelu(x, t), w.copy(), gy), tol=1e-6)


def test_softmax_stable_on_large_logits():
    x = np.array([[1e4, 0.0], [-1e4, -1e4]])
    assert np.isfinite(ref_act.softmax(x, 1)).all()
    assert np.isfinite(ref_act.log_softmax(x, 1)).all()
    assert_close(ref_act.softmax(x, 1), [[1, 0], [0.5, 0.5]])


# ------------------------------------------------------------------------------- PyTorch

@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 4), (3, 2, 7)])
def test_batch_norm_vs_torch(shape, training, rng):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    c = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = rng.standard_normal(c), rng.random(c) + 0.5
    gy = rng.standard_normal(shape)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    rmt, rvt = torch.tensor(rm), torch.tensor(rv)
    yt = tf.batch_norm(xt, rmt, rvt, wt, bt, training=training, momentum=0.3, eps=1e-4)
    yt.backward(torch.tensor(gy))
    if training:
        y = ref_bn.batch_norm_train(x, w, b, 1e-4)[0]
        ref_bn.update_running_stats(x, rm, rv, 0.3)
        gx, gw, gb = ref_bn.batch_norm_backward(gy, x, w, 1e-4)
    else:
        y = ref_bn.batch_norm_eval(x, rm, rv, w, b, 1e-4)
        gx, gw, gb = ref_bn.batch_norm_eval_backward(gy, x, rm, rv, w, 1e-4)
    assert_close(y, yt.detach().numpy())
    assert_close(rm, rmt.numpy(), what="running_mean")
    assert_close(rv, rvt.numpy(), what="running_var")
    assert_close(gx, xt.grad.numpy())
    assert_close(gw, wt.grad.numpy())
    assert_close(gb, bt.grad.numpy())


TORCH_ACTS = {  # name: (torch op on a tensor, our forward, our backward(gy, x, y))
    "relu": (lambda t, F: F.relu(t),) + ACTS["relu"],
    "leaky_relu": (lambda t, F: F.leaky_relu(t, 0.1),) + ACTS["leaky_relu"],
    "elu": (lambda t, F: F.elu(t, 1.5),) + ACTS["elu"],
    "sigmoid": (lambda t, F: torch_sigmoid(t),) + ACTS["sigmoid"],
    "tanh": (lambda t, F: torch_tanh(t),) + ACTS["tanh"],
    "softmax": (lambda t, F: F.softmax(t, 1),) + ACTS["softmax"],
    "log_softmax": (lambda t, F: F.log_softmax(t, 0),) + ACTS["log_softmax"],
}


def torch_sigmoid(t):
    return t.sigmoid()


def torch_tanh(t):
    return t.tanh()


@pytest.mark.parametrize("name", list(TORCH_ACTS))
def test_activations_vs_torch(name, rng):
    torch = pytest.importorskip("torch")
    top, fwd, bwd = TORCH_ACTS[name]
    x = rng.standard_normal((5, 6)) * 4
    x[0, :3] = [0.0, 30.0, -30.0]
    gy = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = top(xt, torch.nn.functional)
    yt.backward(torch.tensor(gy))
    y = fwd(x)
    assert_close(y, yt.detach().numpy())
    assert_close(bwd(gy, x, y), xt.grad.numpy())


@pytest.mark.parametrize("shared", [False, True])
def test_prelu_vs_torch(shared, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 5))
    w = rng.random(1 if shared else 4)
    gy = rng.standard_normal(x.shape)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.prelu(xt, wt)
    yt.backward(torch.tensor(gy))
    assert_close(ref_act.prelu(x, w), yt.detach().numpy())
    gx, gw = ref_act.prelu_backward(gy, x, w)
    assert_close(gx, xt.grad.numpy())
    assert_close(gw, wt.grad.numpy())
