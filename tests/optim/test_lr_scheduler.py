"""fastconv.optim.lr_scheduler: against closed-form references, against PyTorch (when
installed), state_dict round trips and validation."""
import math

import numpy as np
import pytest

from fastconv.optim import SGD, Adam, AdamW, Optimizer
from fastconv.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, OneCycleLR, StepLR
from fastconv.tensor import Tensor


def make_param(value=1.0):
    return Tensor(np.full(3, value), requires_grad=True)


def lr_sequence(sched, n_steps, key=None):
    """The lr (or another group key) of every group, at construction and after each step."""
    opt = sched.optimizer
    get = (lambda g: g["lr"]) if key is None else key
    seq = [[get(g) for g in opt.param_groups]]
    for _ in range(n_steps):
        opt.step()
        sched.step()
        seq.append([get(g) for g in opt.param_groups])
    return seq


def two_groups(cls=SGD, **kwargs):
    return cls([{"params": [make_param()]}, {"params": [make_param()], "lr": 0.5}],
               lr=0.1, **kwargs)


# ---------------------------------------------------------------------------------------
# Against the closed forms.

def test_step_lr_closed_form():
    sched = StepLR(two_groups(), step_size=3, gamma=0.5)
    seq = lr_sequence(sched, 20)
    for epoch, lrs in enumerate(seq):
        np.testing.assert_allclose(lrs, [0.1 * 0.5 ** (epoch // 3), 0.5 * 0.5 ** (epoch // 3)],
                                   rtol=1e-14)
    assert sched.last_epoch == 20 and sched.get_last_lr() == seq[-1]


@pytest.mark.parametrize("eta_min", [0.0, 0.01])
def test_cosine_closed_form_including_beyond_t_max(eta_min):
    t_max = 10
    seq = lr_sequence(CosineAnnealingLR(two_groups(), T_max=t_max, eta_min=eta_min), 35)
    for epoch, lrs in enumerate(seq):
        expected = [eta_min + (base - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2
                    for base in (0.1, 0.5)]
        np.testing.assert_allclose(lrs, expected, rtol=1e-12, atol=1e-15)
    assert seq[t_max] == pytest.approx([eta_min, eta_min], abs=1e-15)


def ref_one_cycle(step, total, max_lr, pct_start, div, final_div, strategy, three_phase):
    """lr at ``step``, from the 1cycle description: piecewise anneals between breakpoints."""
    initial, peak = max_lr / div, max_lr
    final = initial / final_div
    up = pct_start * total - 1
    if strategy == "cos":
        def anneal(a, b, x):
            return b + (a - b) * (1 + math.cos(math.pi * x)) / 2
    else:
        def anneal(a, b, x):
            return a + (b - a) * x
    if three_phase:
        down = 2 * pct_start * total - 2
        if step <= up:
            return anneal(initial, peak, step / up)
        if step <= down:
            return anneal(peak, initial, (step - up) / (down - up))
        return anneal(initial, final, (step - down) / (total - 1 - down))
    if step <= up:
        return anneal(initial, peak, step / up)
    return anneal(peak, final, (step - up) / (total - 1 - up))


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_reference(strategy, three_phase):
    total = 60
    sched = OneCycleLR(SGD([make_param()], lr=0.1, momentum=0.9), max_lr=1.0,
                       total_steps=total, anneal_strategy=strategy, three_phase=three_phase)
    seq = lr_sequence(sched, total - 1)
    expected = [ref_one_cycle(s, total, 1.0, 0.3, 25.0, 1e4, strategy, three_phase)
                for s in range(total)]
    np.testing.assert_allclose([lrs[0] for lrs in seq], expected, rtol=1e-12)
    assert seq[-1][0] == pytest.approx(1.0 / 25 / 1e4)


# ---------------------------------------------------------------------------------------
# Against PyTorch: same values, to the bit.

def _torch_opt(torch, cls_name, **kwargs):
    groups = [{"params": [torch.zeros(3, requires_grad=True)]},
              {"params": [torch.zeros(3, requires_grad=True)], "lr": 0.5}]
    return getattr(torch.optim, cls_name)(groups, lr=0.1, **kwargs)


def _torch_sequence(sched, n_steps, key=None):
    opt = sched.optimizer
    get = (lambda g: g["lr"]) if key is None else key
    seq = [[get(g) for g in opt.param_groups]]
    for _ in range(n_steps):
        opt.step()
        sched.step()
        seq.append([get(g) for g in opt.param_groups])
    return seq


SCHEDULES = [
    ("StepLR", dict(step_size=7, gamma=0.3)),
    ("CosineAnnealingLR", dict(T_max=12)),
    ("CosineAnnealingLR", dict(T_max=15, eta_min=0.003)),
]


@pytest.mark.parametrize("name,kwargs", SCHEDULES)
def test_schedule_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    from fastconv.optim import lr_scheduler
    ours = getattr(lr_scheduler, name)(two_groups(), **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, name)(_torch_opt(torch, "SGD"), **kwargs)
    assert lr_sequence(ours, 60) == _torch_sequence(theirs, 60)
    assert ours.get_last_lr() == theirs.get_last_lr()


ONE_CYCLE = [
    ("SGD", dict(momentum=0.9), dict(max_lr=1.0, total_steps=60)),
    ("SGD", dict(momentum=0.9), dict(max_lr=[1.0, 2.0], total_steps=55,
                                     anneal_strategy="linear")),
    ("SGD", dict(momentum=0.9), dict(max_lr=0.5, epochs=6, steps_per_epoch=10,
                                     three_phase=True, pct_start=0.25)),
    ("SGD", dict(momentum=0.9), dict(max_lr=0.5, total_steps=57, three_phase=True,
                                     anneal_strategy="linear", base_momentum=[0.8, 0.7])),
    ("SGD", dict(), dict(max_lr=0.5, total_steps=50, cycle_momentum=False)),
    ("Adam", dict(), dict(max_lr=0.01, total_steps=60)),
    ("Adam", dict(), dict(max_lr=0.01, total_steps=60, three_phase=True,
                          anneal_strategy="linear", max_momentum=0.97)),
    ("AdamW", dict(), dict(max_lr=0.01, total_steps=52, div_factor=10.0,
                           final_div_factor=100.0)),
]


def _momentum(group):
    return group["betas"] if "betas" in group else group["momentum"]


@pytest.mark.parametrize("opt_name,opt_kwargs,kwargs", ONE_CYCLE)
def test_one_cycle_matches_torch(opt_name, opt_kwargs, kwargs):
    torch = pytest.importorskip("torch")
    ours_opt = two_groups({"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[opt_name], **opt_kwargs)
    ours = OneCycleLR(ours_opt, **kwargs)
    theirs = torch.optim.lr_scheduler.OneCycleLR(_torch_opt(torch, opt_name, **opt_kwargs),
                                                 **kwargs)
    n = ours.total_steps
    assert n == theirs.total_steps
    get = (lambda g: (g["lr"], _momentum(g)))
    assert lr_sequence(ours, n, get) == _torch_sequence(theirs, n, get)
    with pytest.raises(ValueError, match=f"Tried to step {n + 1} times"):
        ours.step()
    with pytest.raises(ValueError, match=f"Tried to step {n + 1} times"):
        theirs.step()


# ---------------------------------------------------------------------------------------
# state_dict round trip: optimiser and scheduler, bit-identical to an uninterrupted run.

def _train(opt, sched, grads, params):
    lrs = []
    for g in grads:
        for p in params:
            p.grad = g.copy()
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr())
    return lrs


@pytest.mark.parametrize("make_sched", [
    lambda opt: StepLR(opt, step_size=3, gamma=0.5),
    lambda opt: CosineAnnealingLR(opt, T_max=4, eta_min=0.01),
    lambda opt: OneCycleLR(opt, max_lr=0.3, total_steps=10),
    lambda opt: OneCycleLR(opt, max_lr=0.3, total_steps=12, three_phase=True,
                           anneal_strategy="linear"),
])
@pytest.mark.parametrize("opt_cls", [SGD, Adam])
def test_state_dict_round_trip(make_sched, opt_cls, rng):
    grads = [rng.standard_normal(3) for _ in range(10)]
    init = rng.standard_normal(3)
    kwargs = {"momentum": 0.9} if opt_cls is SGD else {}

    params = [Tensor(init.copy(), requires_grad=True)]
    opt = opt_cls(params, lr=0.1, **kwargs)
    full_lrs = _train(opt, make_sched(opt), grads, params)

    params = [Tensor(init.copy(), requires_grad=True)]
    opt = opt_cls(params, lr=0.1, **kwargs)
    sched = make_sched(opt)
    lrs = _train(opt, sched, grads[:5], params)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    resumed = [Tensor(params[0].data.copy(), requires_grad=True)]
    _train(opt, sched, grads[5:7], params)  # the saved states are copies

    opt = opt_cls(resumed, lr=0.7)
    sched = make_sched(opt)  # as PyTorch advises: scheduler first, then load both
    opt.load_state_dict(opt_state)
    sched.load_state_dict(sched_state)
    assert sched.optimizer is opt
    lrs += _train(opt, sched, grads[5:], resumed)

    assert lrs == full_lrs
    full = [Tensor(init.copy(), requires_grad=True)]
    opt_full = opt_cls(full, lr=0.1, **kwargs)
    _train(opt_full, make_sched(opt_full), grads, full)
    np.testing.assert_array_equal(resumed[0].data, full[0].data)


# ---------------------------------------------------------------------------------------
# Protocol and validation.

def test_protocol():
    opt = two_groups()
    sched = StepLR(opt, step_size=2)
    assert sched.last_epoch == 0 and sched.base_lrs == [0.1, 0.5]
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert isinstance(sched, LRScheduler)
    last = sched.get_last_lr()
    last[0] = 99.0  # a copy
    assert sched.get_last_lr() == [0.1, 0.5]
    state = sched.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 0 and state["step_size"] == 2


def test_resume_needs_initial_lr():
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(two_groups(), step_size=2, last_epoch=3)


def test_one_cycle_momentum_starts_at_max():
    sgd = SGD([make_param()], lr=0.1, momentum=0.5)
    OneCycleLR(sgd, max_lr=1.0, total_steps=10, max_momentum=0.93)
    assert sgd.param_groups[0]["momentum"] == 0.93
    adam = Adam([make_param()], betas=(0.5, 0.99))
    OneCycleLR(adam, max_lr=1.0, total_steps=10, max_momentum=0.93)
    assert adam.param_groups[0]["betas"] == (0.93, 0.99)


class _NoMomentum(Optimizer):
    def __init__(self, params, lr=0.1):
        super().__init__(params, dict(lr=lr))


@pytest.mark.parametrize("make,exc,match", [
    (lambda o: StepLR(object(), 3), TypeError, "object is not an Optimizer"),
    (lambda o: StepLR(o, 0), ValueError, "positive integer, got 0"),
    (lambda o: CosineAnnealingLR(o, T_max=0), ValueError, "T_max to be positive"),
    (lambda o: OneCycleLR(o, 1.0), ValueError, "either total_steps OR"),
    (lambda o: OneCycleLR(o, 1.0, total_steps=0), ValueError, "total_steps, but got 0"),
    (lambda o: OneCycleLR(o, 1.0, epochs=2, steps_per_epoch=-1), ValueError,
     "steps_per_epoch, but got -1"),
    (lambda o: OneCycleLR(o, 1.0, total_steps=10, pct_start=1.5), ValueError, "pct_start"),
    (lambda o: OneCycleLR(o, 1.0, total_steps=10, anneal_strategy="exp"), ValueError,
     "'cos' or 'linear'"),
    (lambda o: OneCycleLR(o, [1.0], total_steps=10), ValueError,
     "max_lr must have the same length"),
    (lambda o: OneCycleLR(_NoMomentum([make_param()]), 1.0, total_steps=10), ValueError,
     "must support momentum or beta1"),
])
def test_validation(make, exc, match):
    with pytest.raises(exc, match=match):
        make(two_groups())


def test_one_cycle_without_momentum_cycling():
    opt = _NoMomentum([make_param()])
    sched = OneCycleLR(opt, 1.0, total_steps=5, cycle_momentum=False)
    assert len(lr_sequence(sched, 5)) == 6
    with pytest.raises(ValueError, match="Tried to step 6 times. The specified number of "
                                         "total steps is 5"):
        sched.step()
