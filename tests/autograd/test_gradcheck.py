"""gradcheck passes on correct gradients and names the worst entry of a wrong one."""
import numpy as np
import pytest

from fastconv.autograd import Function
from fastconv.gradcheck import GradcheckError, gradcheck
from fastconv.tensor import Tensor


def leaf(*shape, seed=0, low=0.5, high=2.0):
    return Tensor(np.random.default_rng(seed).uniform(low, high, shape), requires_grad=True)


class BadSquare(Function):
    """x**2 with a backward that is wrong at one element."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        gx = 2 * x * g
        gx.flat[3] += 0.5
        return gx


class BadMul(Function):
    """a * b with a wrong gradient for b only."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b, g * a * 1.01


@pytest.mark.parametrize("fn, shapes", [
    (lambda a, b: a * b + a / b, [(3, 4), (4,)]),
    (lambda a, b: (a @ b) ** 2, [(3, 4), (4, 2)]),
    (lambda a: a.mean(axis=0, keepdims=True) - a.T.sum(), [(3, 4)]),
    (lambda a: a[[0, 0, 2], 1:].reshape(-1), [(3, 4)]),
    (lambda a: (a * a).sum(), [(2, 3)]),
])
def test_passes_on_correct_functions(fn, shapes):
    assert gradcheck(fn, [leaf(*s, seed=i) for i, s in enumerate(shapes)]) is True


def test_passes_on_large_output_with_random_cotangents():
    x, w = leaf(20, 30), leaf(30, 25, seed=1)  # 500 output elements
    assert gradcheck(lambda a, b: a @ b * 0.5, [x, w])


def test_raises_on_wrong_backward_with_worst_entry():
    x = leaf(2, 3)
    with pytest.raises(GradcheckError) as info:
        gradcheck(BadSquare.apply, [x])
    msg = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert "input 0" in msg and "(1, 0)" in msg and "analytic" in msg and "numeric" in msg
    # d out[0, 0] / d x[1, 0] is 0, but the bad backward says 0.5
    assert "output element (0, 0)" in msg and "analytic 0.5 vs numeric 0," in msg


def test_names_the_wrong_input():
    with pytest.raises(GradcheckError, match="input 2"):
        gradcheck(lambda a, k, b: BadMul.apply(a, b) * k, [leaf(3), 7, leaf(3, seed=1)])
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(BadMul.apply, [leaf(3), leaf(3, seed=1)])


def test_raises_on_wrong_backward_with_large_output():
    with pytest.raises(GradcheckError, match="random cotangent"):
        gradcheck(lambda a: BadSquare.apply(a) + 0.0, [leaf(20, 20)])


def test_only_inputs_with_requires_grad_are_checked():
    const = Tensor(np.ones(3))
    assert gradcheck(BadMul.apply, [leaf(3), const])


def test_rejects_non_float64_inputs():
    with pytest.raises(TypeError, match="float32"):
        gradcheck(lambda a: a * 2, [Tensor(np.ones(3, np.float32), requires_grad=True)])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(lambda a: a * 2, [Tensor(np.ones(3))])
    with pytest.raises(TypeError, match="Tensor"):
        gradcheck(lambda a: a.data * 2, [leaf(3)])
    with pytest.raises(ValueError, match="leaf"):
        gradcheck(lambda a: a * 2, [leaf(3) * 2])


def test_restores_inputs_and_accepts_read_only_data():
    data = np.random.default_rng(0).uniform(size=(2, 2))
    data.flags.writeable = False
    x = Tensor(data, requires_grad=True)
    x.grad = np.full((2, 2), 7.0)
    assert gradcheck(lambda a: a ** 3, x)
    assert x.data is data and np.all(x.grad == 7.0)


def test_output_independent_of_input():
    assert gradcheck(lambda a, b: b * 2, [leaf(2), leaf(2, seed=1)])
