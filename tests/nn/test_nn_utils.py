"""fastconv.nn.utils: gradient clipping (against a manual computation and PyTorch) and the
L1 penalty."""
import math

import numpy as np
import pytest

import fastconv as fc
from fastconv import nn
from fastconv.optim import SGD
from fastconv.nn.utils import (clip_grad_norm_, clip_grad_value_, l1_penalty,
                               parameters_to_vector, vector_to_parameters)


def _params(rng, scale=1.0):
    ps = [nn.Parameter(rng.standard_normal(s)) for s in ((3, 4), (5,), (2, 2, 3))]
    for p in ps:
        p.grad = rng.standard_normal(p.shape) * scale
    return ps


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_against_manual(rng, norm_type):
    ps = _params(rng, scale=5.0)
    flat = np.concatenate([p.grad.ravel() for p in ps])
    want = np.max(np.abs(flat)) if norm_type == math.inf else \
        np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)
    grads = [p.grad.copy() for p in ps]
    total = clip_grad_norm_(ps, max_norm=1.0, norm_type=norm_type)
    assert total == pytest.approx(want, rel=1e-12)
    coef = 1.0 / (want + 1e-6)
    for p, g in zip(ps, grads):
        assert np.allclose(p.grad, g * coef, rtol=1e-12, atol=0)
    new = np.concatenate([p.grad.ravel() for p in ps])
    new_norm = np.max(np.abs(new)) if norm_type == math.inf else \
        np.sum(np.abs(new) ** norm_type) ** (1 / norm_type)
    assert new_norm <= 1.0


def test_clip_grad_norm_no_change_below_max_and_skips_missing(rng):
    ps = _params(rng, scale=1e-3)
    ps.append(nn.Parameter(np.ones(3)))            # no gradient: ignored
    grads = [p.grad.copy() for p in ps[:3]]
    total = clip_grad_norm_(iter(ps), max_norm=10)
    assert total < 10
    for p, g in zip(ps, grads):
        assert np.array_equal(p.grad, g)
    assert clip_grad_norm_([nn.Parameter(np.ones(2))], 1.0) == 0.0
    single = _params(rng)[0]
    clip_grad_norm_(single, 0.5)
    assert np.linalg.norm(single.grad) == pytest.approx(0.5, rel=1e-5)


def test_clip_grad_norm_nonfinite(rng):
    ps = _params(rng)
    ps[0].grad[0, 0] = np.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
    assert math.isinf(clip_grad_norm_(ps, 1.0))


def test_clip_grad_norm_matches_torch(rng):
    torch = pytest.importorskip("torch")
    ps = _params(rng, scale=3.0)
    tps = [torch.tensor(p.data, requires_grad=True) for p in ps]
    for tp, p in zip(tps, ps):
        tp.grad = torch.tensor(p.grad)
    for norm_type in (2.0, 1.5):
        a = clip_grad_norm_(ps, 2.0, norm_type)
        b = torch.nn.utils.clip_grad_norm_(tps, 2.0, norm_type)
        assert a == pytest.approx(float(b), rel=1e-12)
        for p, tp in zip(ps, tps):
            assert np.allclose(p.grad, tp.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_clip_grad_value(rng):
    ps = _params(rng, scale=3.0)
    clip_grad_value_(ps, 0.5)
    assert all(np.abs(p.grad).max() <= 0.5 for p in ps)
    assert any(np.abs(p.grad).max() == 0.5 for p in ps)


def test_l1_penalty_value_and_gradient(rng):
    ps = [nn.Parameter(rng.standard_normal((3, 4))), nn.Parameter(np.array([0.0, -2.0, 3.0]))]
    frozen = nn.Parameter(np.array([1.0, -1.0]), requires_grad=False)
    pen = l1_penalty(ps + [frozen])
    assert isinstance(pen, fc.Tensor)
    assert float(pen) == pytest.approx(np.abs(ps[0].data).sum() + 5.0 + 2.0)
    (0.1 * pen).backward()
    assert np.allclose(ps[0].grad, 0.1 * np.sign(ps[0].data))
    assert np.array_equal(ps[1].grad, [0.0, -0.1, 0.1])
    assert frozen.grad is None
    assert float(l1_penalty([])) == 0.0


def test_l1_penalty_drives_weights_to_zero():
    lin = nn.Linear(4, 1)
    opt = SGD(lin.parameters(), lr=0.01)
    start = float(l1_penalty(lin.parameters()))
    for _ in range(5):
        opt.zero_grad()
        l1_penalty(lin.parameters()).backward()
        opt.step()
    assert float(l1_penalty(lin.parameters())) < start


def test_parameters_vector_round_trip(rng):
    ps = _params(rng)
    vec = parameters_to_vector(ps)
    assert vec.shape == (12 + 5 + 12,)
    vector_to_parameters(vec * 2, ps)
    assert np.allclose(parameters_to_vector(ps), vec * 2)
    with pytest.raises(ValueError):
        vector_to_parameters(vec[:-1], ps)
