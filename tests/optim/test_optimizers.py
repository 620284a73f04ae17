"""fastconv.optim optimisers: against plain reference loops, against PyTorch (when
installed), state_dict round trips, frozen parameters, validation and dtypes."""
import itertools

import numpy as np
import pytest

from fastconv.optim import SGD, Adam, AdamW, Optimizer
from fastconv.tensor import Tensor

TOL = {np.float64: 1e-12, np.float32: 1e-6}


def assert_rel(actual, expected, tol, what=""):
    """max |actual - expected| <= tol * max(1, max |expected|)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    err = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
    scale = max(1.0, float(np.max(np.abs(expected))))
    assert err <= tol * scale, f"{what}: max abs err {err:.3g} > {tol:.1g} x {scale:.3g}"


def make_params(rng, dtype=np.float64, shapes=((3, 4), (5,))):
    return [Tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]


def make_grads(rng, params, n_steps):
    return [[rng.standard_normal(p.shape).astype(p.dtype) for p in params]
            for _ in range(n_steps)]


def run(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else g.copy()
        opt.step()


# ---------------------------------------------------------------------------------------
# Reference loops, written from the published update rules (PyTorch's docs), elementwise.

def ref_sgd(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
            maximize=False):
    p = [float(v) for v in p]
    buf = [None] * len(p)
    for g_step in grads:
        for i, g in enumerate(g_step):
            g = -float(g) if maximize else float(g)
            g = g + weight_decay * p[i]
            if momentum != 0:
                buf[i] = g if buf[i] is None else momentum * buf[i] + (1 - dampening) * g
                g = g + momentum * buf[i] if nesterov else buf[i]
            p[i] = p[i] - lr * g
    return np.array(p)


def ref_adam(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
             maximize=False, decoupled=False):
    beta1, beta2 = betas
    p = [float(v) for v in p]
    m, v, v_max = [0.0] * len(p), [0.0] * len(p), [0.0] * len(p)
    for t, g_step in enumerate(grads, start=1):
        for i, g in enumerate(g_step):
            g = -float(g) if maximize else float(g)
            if decoupled:
                p[i] *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            v_max[i] = max(v_max[i], v[i])
            m_hat = m[i] / (1 - beta1 ** t)
            v_hat = (v_max[i] if amsgrad else v[i]) / (1 - beta2 ** t)
            p[i] -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return np.array(p)


def test_sgd_known_values():
    # p = 1, g = 1, lr = 0.1, momentum = 0.9: buf 1 then 1.9; p 0.9 then 0.71.
    p = Tensor(np.array([1.0]), requires_grad=True)
    opt = SGD([p], lr=0.1, momentum=0.9)
    run(opt, [p], [[np.array([1.0])]] * 2)
    np.testing.assert_allclose(p.data, [0.71], rtol=1e-15)


def test_adam_first_step_is_lr_sign():
    # After one step, m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps).
    p = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    g = np.array([0.5, -4.0, 1e-3])
    run(Adam([p], lr=0.01, eps=0.0), [p], [[g]])
    np.testing.assert_allclose(p.data, [0.99, -1.99, 2.99], rtol=1e-15)


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.1),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
    dict(lr=0.1, momentum=0.5, nesterov=True, maximize=True),
]


@pytest.mark.parametrize("kwargs", SGD_CASES)
def test_sgd_matches_reference_loop(kwargs, rng):
    params = make_params(rng, shapes=((7,),))
    p0 = params[0].data.copy()
    grads = make_grads(rng, params, 5)
    run(SGD(params, **kwargs), params, grads)
    expected = ref_sgd(p0, [g[0] for g in grads], **kwargs)
    assert_rel(params[0].data, expected, 1e-13)


ADAM_CASES = [
    dict(lr=0.01),
    dict(lr=0.01, weight_decay=0.1, amsgrad=True),
    dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, maximize=True),
]


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("kwargs", ADAM_CASES)
def test_adam_matches_reference_loop(kwargs, decoupled, rng):
    params = make_params(rng, shapes=((7,),))
    p0 = params[0].data.copy()
    grads = make_grads(rng, params, 5)
    cls = AdamW if decoupled else Adam
    kwargs = dict(kwargs, weight_decay=kwargs.get("weight_decay", 0.05 if decoupled else 0))
    run(cls(params, **kwargs), params, grads)
    expected = ref_adam(p0, [g[0] for g in grads], decoupled=decoupled, **kwargs)
    assert_rel(params[0].data, expected, 1e-13)


# ---------------------------------------------------------------------------------------
# Against PyTorch.

def _sgd_grid():
    for momentum, dampening, nesterov, weight_decay, maximize in itertools.product(
            [0.0, 0.9], [0.0, 0.4], [False, True], [0.0, 0.1], [False, True]):
        if nesterov and (momentum == 0 or dampening != 0):
            continue
        yield dict(lr=0.05, momentum=momentum, dampening=dampening, nesterov=nesterov,
                   weight_decay=weight_decay, maximize=maximize)


def _adam_grid():
    for amsgrad, weight_decay, maximize in itertools.product(
            [False, True], [0.0, 0.1], [False, True]):
        yield dict(lr=0.01, betas=(0.9, 0.99), amsgrad=amsgrad, weight_decay=weight_decay,
                   maximize=maximize)


TORCH_CASES = ([("SGD", kw) for kw in _sgd_grid()] + [("Adam", kw) for kw in _adam_grid()]
               + [("AdamW", kw) for kw in _adam_grid()])
OURS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


def _run_torch(torch, name, kwargs, params0, grads, groups=None):
    tparams = [torch.tensor(p, requires_grad=True) for p in params0]
    if groups is not None:
        tparams_arg = [dict(g, params=[tparams[i] for i in g["params"]]) for g in groups]
    else:
        tparams_arg = tparams
    opt = getattr(torch.optim, name)(tparams_arg, **kwargs)
    for step_grads in grads:
        for p, g in zip(tparams, step_grads):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in tparams]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kwargs", TORCH_CASES,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
                              for n, kw in TORCH_CASES])
def test_matches_torch(name, kwargs, dtype, rng):
    torch = pytest.importorskip("torch")
    params = make_params(rng, dtype)
    params0 = [p.data.copy() for p in params]
    grads = make_grads(rng, params, 20)
    run(OURS[name](params, **kwargs), params, grads)
    expected = _run_torch(torch, name, kwargs, params0, grads)
    for p, e in zip(params, expected):
        assert p.data.dtype == dtype
        assert_rel(p.data, e, TOL[dtype], f"{name} {kwargs}")


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_param_groups_match_torch(name, rng):
    torch = pytest.importorskip("torch")
    params = make_params(rng, shapes=((3, 4), (5,), (2,)))
    params0 = [p.data.copy() for p in params]
    grads = make_grads(rng, params, 10)
    extra = {"momentum": 0.9} if name == "SGD" else {"betas": (0.5, 0.9)}
    groups = [{"params": [0, 2], "lr": 0.2, "weight_decay": 0.1},
              dict({"params": [1]}, **extra)]
    ours = [dict(g, params=[params[i] for i in g["params"]]) for g in groups]
    run(OURS[name](ours, lr=0.01), params, grads)
    expected = _run_torch(torch, name, {"lr": 0.01}, params0, grads, groups)
    for p, e in zip(params, expected):
        assert_rel(p.data, e, 1e-12)


# ---------------------------------------------------------------------------------------
# state_dict, frozen parameters, API behaviour.

STATE_CASES = [(SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
               (Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
               (AdamW, dict(lr=0.01, maximize=True))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls,kwargs", STATE_CASES)
def test_state_dict_round_trip_is_bit_identical(cls, kwargs, dtype, rng):
    params = make_params(rng, dtype)
    init = [p.data.copy() for p in params]
    grads = make_grads(rng, params, 10)
    run(cls(params, **kwargs), params, grads)
    uninterrupted = [p.data.copy() for p in params]

    resumed = [Tensor(x.copy(), requires_grad=True) for x in init]
    first = cls(resumed, **kwargs)
    run(first, resumed, grads[:5])
    saved = first.state_dict()
    second_params = [Tensor(p.data.copy(), requires_grad=True) for p in resumed]
    run(first, resumed, grads[5:7])  # the saved copy must not change with the optimiser
    second = cls(second_params, lr=123.0)
    second.load_state_dict(saved)
    assert second.param_groups[0]["lr"] == kwargs["lr"]
    run(second, second_params, grads[5:])
    for p, e in zip(second_params, uninterrupted):
        assert p.data.dtype == dtype
        np.testing.assert_array_equal(p.data, e)


def test_state_dict_format(rng):
    a, b, c = make_params(rng, shapes=((2,), (3,), (4,)))
    opt = Adam([{"params": [a, b]}, {"params": [c], "lr": 0.5}], lr=0.1)
    run(opt, [a, b, c], [[np.ones(2), None, np.ones(4)]])
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.5 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert sorted(sd["state"]) == [0, 2]  # b had no grad: no state
    assert sd["state"][0]["step"] == 1.0
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert sd["state"][0]["exp_avg"] is not opt.state[a]["exp_avg"]


def test_load_state_dict_casts_to_param_dtype(rng):
    p64 = make_params(rng, np.float64, shapes=((3,),))
    opt = SGD(p64, lr=0.1, momentum=0.9)
    run(opt, p64, make_grads(rng, p64, 2))
    p32 = [Tensor(np.zeros(3, np.float32), requires_grad=True)]
    opt32 = SGD(p32, lr=0.1, momentum=0.9)
    opt32.load_state_dict(opt.state_dict())
    assert opt32.state[p32[0]]["momentum_buffer"].dtype == np.float32


def test_load_state_dict_validates_groups(rng):
    a, b = make_params(rng)
    sd = SGD([a, b], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="doesn't match the size"):
        SGD([a], lr=0.1).load_state_dict(sd)


@pytest.mark.parametrize("cls,kwargs", STATE_CASES)
def test_frozen_and_gradless_params_untouched(cls, kwargs, rng):
    frozen, gradless, live = make_params(rng, shapes=((3,), (3,), (3,)))
    frozen.grad = np.ones(3)
    frozen.requires_grad = False
    before = [frozen.data.copy(), gradless.data.copy(), live.data.copy()]
    opt = cls([frozen, gradless, live], **kwargs)
    live.grad = np.ones(3)
    for _ in range(3):
        opt.step()
    np.testing.assert_array_equal(frozen.data, before[0])
    np.testing.assert_array_equal(gradless.data, before[1])
    assert not np.array_equal(live.data, before[2])
    assert frozen not in opt.state and gradless not in opt.state


def test_updates_in_place_and_no_tape(rng):
    (p,) = make_params(rng, shapes=((4,),))
    data = p.data
    p.grad = np.ones(4)
    grad = p.grad.copy()
    SGD([p], lr=0.1, weight_decay=0.1, maximize=True).step()
    assert p.data is data and p.grad_fn is None and p.is_leaf
    np.testing.assert_array_equal(p.grad, grad)  # the gradient itself is not modified


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_float32_stays_float32(cls, rng):
    params = make_params(rng, np.float32)
    opt = cls(params, lr=0.01, weight_decay=0.1)
    grads = make_grads(rng, params, 3)
    grads[0][0] = grads[0][0].astype(np.float64)  # a float64 grad is cast, not promoted
    run(opt, params, grads)
    for p in params:
        assert p.data.dtype == np.float32
        assert all(v.dtype == np.float32 for v in opt.state[p].values()
                   if isinstance(v, np.ndarray))


def test_zero_grad(rng):
    a, b = make_params(rng)
    a.grad, b.grad = np.ones(a.shape), np.ones(b.shape)
    opt = SGD([a, b], lr=0.1)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad, 0)
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_step_returns_closure_loss(rng):
    (p,) = make_params(rng, shapes=((2,),))

    def closure():
        p.grad = np.ones(2)
        return 3.5

    before = p.data.copy()
    opt = SGD([p], lr=0.1)
    assert opt.step(closure) == 3.5
    np.testing.assert_allclose(p.data, before - 0.1)
    assert not opt.state_dict()["state"]  # no momentum: no state, as PyTorch
    assert SGD([p], lr=0.1).step() is None


def test_add_param_group_and_defaults(rng):
    a, b = make_params(rng)
    opt = SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert opt.param_groups[1]["params"] == [b]
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["momentum"] == 0.9
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        opt.add_param_group({"params": [Tensor(np.zeros(1), requires_grad=True)], "lr": -1})


@pytest.mark.parametrize("make,match", [
    (lambda p: SGD(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), "Invalid momentum value: -0.5"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1e-4), "Invalid weight_decay value"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires a momentum"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: Adam(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: Adam(p, eps=-1e-8), "Invalid epsilon value"),
    (lambda p: Adam(p, betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (lambda p: AdamW(p, betas=(0.9, -0.1)), "Invalid beta parameter at index 1"),
    (lambda p: AdamW(p, weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    (lambda p: SGD(p + p, lr=0.1), "duplicate parameters"),
    (lambda p: SGD([{"params": p}, {"params": p[:1]}], lr=0.1), "more than one parameter"),
    (lambda p: SGD([], lr=0.1), "empty parameter list"),
])
def test_validation_errors(make, match, rng):
    with pytest.raises(ValueError, match=match):
        make(make_params(rng))


def test_type_errors(rng):
    (p,) = make_params(rng, shapes=((2,),))
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        SGD({p}, lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        SGD([{"params": {p}}], lr=0.1)
    with pytest.raises(TypeError, match="can only optimize Tensors"):
        SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        SGD([p * 2], lr=0.1)


def test_grad_shape_mismatch(rng):
    (p,) = make_params(rng, shapes=((2,),))
    p.grad = np.ones(3)
    with pytest.raises(ValueError, match=r"expected a gradient of shape \(2,\)"):
        SGD([p], lr=0.1).step()


def test_optimizer_base_is_exported():
    assert issubclass(Adam, Optimizer) and issubclass(AdamW, Adam)
