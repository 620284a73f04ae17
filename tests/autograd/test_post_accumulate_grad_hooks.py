"""Tensor.register_post_accumulate_grad_hook and autograd.queue_callback: the hooks that let
data-parallel training send a gradient while backward is still running."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import autograd


def test_hook_fires_once_with_the_final_gradient_during_backward():
    w1 = fc.tensor(np.array([2.0, 3.0]), requires_grad=True)
    w2 = fc.tensor(np.array([5.0, 7.0]), requires_grad=True)
    x = np.array([1.0, -1.0])
    seen = []
    w2.register_post_accumulate_grad_hook(
        lambda t: seen.append(("w2", t.grad.copy(), w1.grad)))
    w1.register_post_accumulate_grad_hook(lambda t: seen.append(("w1", t.grad.copy(), None)))
    # w2 is used twice, late in the graph; w1 early: w2's gradient is final first.
    h = x * w1
    loss = (h * w2 + w2 * w2).sum()
    loss.backward()
    assert [s[0] for s in seen] == ["w2", "w1"]
    np.testing.assert_array_equal(seen[0][1], w2.grad)          # complete when it fired
    np.testing.assert_array_equal(seen[0][1], x * w1.data + 2 * w2.data)
    assert seen[0][2] is None  # ... before w1 had any gradient: during backward
    np.testing.assert_array_equal(seen[1][1], x * w2.data)


def test_hook_sees_accumulated_gradient_and_can_be_removed():
    w = fc.tensor(np.ones(3), requires_grad=True)
    calls = []
    handle = w.register_post_accumulate_grad_hook(lambda t: calls.append(t.grad.copy()))
    (w * 2).sum().backward()
    (w * 3).sum().backward()
    np.testing.assert_array_equal(calls[1], np.full(3, 5.0))
    handle.remove()
    (w * 1).sum().backward()
    assert len(calls) == 2


def test_hook_skips_leaves_without_a_gradient_and_fires_on_a_root_leaf():
    a = fc.tensor(np.ones(2), requires_grad=True)
    b = fc.tensor(np.ones(2), requires_grad=True)
    fired = []
    for t, name in ((a, "a"), (b, "b")):
        t.register_post_accumulate_grad_hook(lambda t, name=name: fired.append(name))
    (a * 2).sum().backward()
    assert fired == ["a"]
    b.backward(np.ones(2))
    assert fired == ["a", "b"]


def test_hook_only_on_leaves():
    w = fc.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(TypeError, match="callable"):
        w.register_post_accumulate_grad_hook(3)


def test_queue_callback_runs_after_every_hook_before_backward_returns():
    w1 = fc.tensor(np.ones(2), requires_grad=True)
    w2 = fc.tensor(np.ones(2), requires_grad=True)
    events = []

    def hook(t):
        events.append("hook")
        if len(events) == 1:
            autograd.queue_callback(lambda: events.append("callback"))

    w1.register_post_accumulate_grad_hook(hook)
    w2.register_post_accumulate_grad_hook(hook)
    ((w1 * 3) * w2).sum().backward()
    assert events == ["hook", "hook", "callback"]
    with pytest.raises(RuntimeError, match="no backward"):
        autograd.queue_callback(lambda: None)


def test_hooks_do_not_change_gradients(rng):
    x = fc.tensor(rng.standard_normal((4, 3, 6, 6)).astype(np.float32))
    conv = fc.nn.Conv2d(3, 2, 3)
    out = conv(x).sum()
    out.backward()
    plain = [p.grad.copy() for p in conv.parameters()]
    conv.zero_grad()
    for p in conv.parameters():
        p.register_post_accumulate_grad_hook(lambda t: None)
    conv(x).sum().backward()
    for p, g in zip(conv.parameters(), plain):
        np.testing.assert_array_equal(p.grad, g)
