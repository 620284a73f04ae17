"""Gradients of every Tensor op against float64 central differences, and the backward engine:
accumulation, shared values, deep graphs, no_grad, freeing the graph, the Function API."""
import gc
import threading
import weakref

import numpy as np
import pytest

from fastconv.autograd import Function, is_grad_enabled, no_grad
from fastconv.tensor import Tensor, tensor

EPS = 1e-6


def fd_vjp(fn, arrays, i, v):
    """v . d fn / d arrays[i] by central differences, on fresh constant Tensors."""
    grad = np.zeros_like(arrays[i])
    for j in np.ndindex(arrays[i].shape):
        values = []
        for step in (EPS, -EPS):
            shifted = [a.copy() for a in arrays]
            shifted[i][j] += step
            values.append(np.sum(v * fn(*[Tensor(a) for a in shifted]).data))
        grad[j] = (values[0] - values[1]) / (2 * EPS)
    return grad


def check_grads(fn, *arrays, seed=0):
    """Backward of fn(*Tensors) with a random cotangent equals the central difference."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    leaves = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*leaves)
    v = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(v)
    for i, leaf in enumerate(leaves):
        expected = fd_vjp(fn, arrays, i, v)
        got = np.zeros_like(expected) if leaf.grad is None else leaf.grad
        assert got.shape == leaf.shape
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7, err_msg=f"input {i}")


R = np.random.default_rng(42)


def pos(*shape):
    return R.uniform(0.5, 2.0, shape)


def sym(*shape):
    return R.standard_normal(shape)


BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b,
}
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((4,), (2, 3, 4)), ((), (2, 3)),
                    ((2, 1, 3), (4, 1))]


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_binary_ops_with_broadcasting(op, shapes):
    check_grads(BINARY[op], pos(*shapes[0]), pos(*shapes[1]))


C31 = pos(3, 1)


@pytest.mark.parametrize("fn", [
    lambda x: x + 2.0, lambda x: 2.0 + x, lambda x: x - 3, lambda x: 3 - x, lambda x: x * 1.5,
    lambda x: 1.5 * x, lambda x: x / 4, lambda x: 4 / x, lambda x: x ** 3, lambda x: x ** -0.5,
    lambda x: 2.0 ** x, lambda x: -x, lambda x: +x,
    lambda x: np.full((3, 4), 2.0) * x, lambda x: np.arange(4.0) - x,
    lambda x: C31 / x, lambda x: x ** np.array([1.0, 2.0, 3.0, 0.5]),
])
def test_ops_with_constants(fn):
    check_grads(fn, pos(3, 4))


@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)),
                                    ((4,), (4,)), ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)),
                                    ((2, 1, 3, 4), (3, 4, 2)), ((2, 3, 4), (4,)),
                                    ((4,), (2, 4, 3))], ids=str)
def test_matmul(shapes):
    check_grads(lambda a, b: a @ b, sym(*shapes[0]), sym(*shapes[1]))


def test_matmul_with_constant_on_either_side():
    w = sym(4, 2)
    check_grads(lambda a: a @ w, sym(3, 4))
    check_grads(lambda b: w.T @ b, sym(4, 3))


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (-1, -3), (1,)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_sum_mean(axis, keepdims, reduce):
    check_grads(lambda x: getattr(x, reduce)(axis=axis, keepdims=keepdims), sym(2, 3, 4))


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value")
def test_mean_of_empty_axis_is_finite():
    x = tensor(np.zeros((0, 3)), requires_grad=True)
    x.mean(axis=0).sum().backward()
    assert x.grad.shape == (0, 3)


@pytest.mark.parametrize("fn", [
    lambda x: x.reshape(6, 4), lambda x: x.reshape((4, -1)), lambda x: x.reshape(-1),
    lambda x: x.flatten(), lambda x: x.flatten(0), lambda x: x.transpose(),
    lambda x: x.transpose(1, 2, 0), lambda x: x.transpose((0, -1, 1)), lambda x: x.T,
])
def test_shape_ops(fn):
    check_grads(fn, sym(2, 3, 4))


@pytest.mark.parametrize("index", [
    1, -1, (0, 2), slice(1, None), (slice(None), slice(None, None, 2)), (Ellipsis, 1),
    (None, 0), [0, 0, 2], ([0, 2, 2], [1, 1, 3]), (slice(None), [3, 3, 0]),
    np.array([[True, False, True, False]] * 3), np.array([2, 0, 2, 2]),
], ids=str)
def test_getitem(index):
    check_grads(lambda x: x[index], sym(3, 4))


def test_getitem_with_tensor_index():
    check_grads(lambda x: x[tensor([1, 1, 0])], sym(3, 2))


def test_composite_expression():
    check_grads(lambda x, w, b: ((x @ w + b) ** 2).mean(axis=0) / (1.0 + x.sum()),
                pos(5, 3), sym(3, 2), sym(2))


def test_value_used_twice_accumulates():
    x = tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)
    x.zero_grad()
    (x + x).sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 2.0, 2.0])


def test_intermediate_used_twice():
    check_grads(lambda x: (lambda y: y * y + y)(x * 3.0), sym(4))


def test_diamond_graph():
    x = tensor(np.array([0.5, 2.0]), requires_grad=True)
    a = x * 2
    b, c = a + 1, a * 3
    d = b * c  # = 3 a^2 + 3 a, so dd/da = 6 a + 3 and dd/dx = 2 (6 a + 3)
    d.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * (6 * 2 * x.data + 3))
    check_grads(lambda x: (lambda a: (a + 1) * (a * 3) - a.sum())(x * 2), sym(3))


def test_long_chain_has_no_recursion_limit():
    x = tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.backward()
    assert x.grad == 1.0
    assert y.grad_fn.inputs is None  # freed


def test_grad_accumulates_across_backward_calls():
    x = tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 3 + 2 * x.data)


def test_leaf_grads_do_not_alias():
    x, z = tensor(np.ones(3), requires_grad=True), tensor(np.ones(3), requires_grad=True)
    g = np.ones(3)
    (x + z).backward(g)
    assert not np.shares_memory(x.grad, z.grad) and not np.shares_memory(x.grad, g)
    x.grad += 1
    np.testing.assert_array_equal(z.grad, np.ones(3))
    np.testing.assert_array_equal(g, np.ones(3))


def test_backward_on_leaf_and_with_tensor_grad():
    x = tensor(np.ones((2, 2)), requires_grad=True)
    x.backward(tensor(np.full((2, 2), 3.0)))
    np.testing.assert_array_equal(x.grad, np.full((2, 2), 3.0))


def test_only_inputs_that_require_grad_get_grads():
    x = tensor(np.ones(3), requires_grad=True)
    c = tensor(np.ones(3))
    (x * c).sum().backward()
    assert c.grad is None and x.grad is not None


def test_float32_grads():
    x = tensor(np.ones((2, 3), np.float32), requires_grad=True)
    (x * np.ones(3) + 1.0).sum().backward()  # float64 intermediate
    assert x.grad.dtype == np.float32


# --- errors ----------------------------------------------------------------------------

def test_backward_of_non_scalar_needs_grad():
    y = tensor(np.ones(3), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="one-element"):
        y.backward()
    tensor(np.ones((1, 1)), requires_grad=True).sum(axis=0).backward()  # one element: fine


def test_backward_with_wrong_grad_shape():
    y = tensor(np.ones(3), requires_grad=True) * 2
    with pytest.raises(ValueError, match=r"expected grad of shape \(3,\), got \(2,\)"):
        y.backward(np.ones(2))


def test_backward_without_requires_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (tensor([1.0]) * 2).backward()


# --- no_grad ---------------------------------------------------------------------------

def test_no_grad_records_nothing():
    x = tensor(np.ones(3), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = (x * 2 + 1).sum()
        z = x[:2] @ x[1:]
    assert is_grad_enabled()
    for t in (y, z):
        assert not t.requires_grad and t.grad_fn is None
    with pytest.raises(RuntimeError):
        y.backward()


def test_no_grad_nests_and_restores_after_exception():
    with no_grad():
        with no_grad():
            pass
        assert not is_grad_enabled()
    assert is_grad_enabled()
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError
    assert is_grad_enabled()


def test_no_grad_as_decorator():
    @no_grad()
    def double(t):
        assert not is_grad_enabled()
        return t * 2
    assert not double(tensor([1.0], requires_grad=True)).requires_grad
    assert is_grad_enabled()


def test_grad_mode_is_thread_local():
    seen = []
    with no_grad():
        t = threading.Thread(target=lambda: seen.append(is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


# --- freeing the graph -----------------------------------------------------------------

class Square(Function):
    @staticmethod
    def forward(ctx, x):
        saved = x.copy()
        ctx.save_for_backward(saved)
        ctx.saved_ref = weakref.ref(saved)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


def test_graph_freed_after_backward():
    x = tensor(np.array([3.0]), requires_grad=True)
    y = Square.apply(x)
    ref = y.grad_fn.ctx.saved_ref
    loss = (y * 2).sum()
    loss.backward()
    gc.collect()
    assert ref() is None, "saved array still alive after backward"
    assert x.grad[0] == 12.0
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        (y * 1.0).sum().backward()  # new op on top of a freed graph


def test_retain_graph_allows_second_backward():
    x = tensor(np.array([3.0]), requires_grad=True)
    y = Square.apply(x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad[0] == 12.0


# --- the Function API ------------------------------------------------------------------

class Scale(Function):
    """Scale(x, w, factor, offset=...): non-Tensor args in between, kwargs, extras."""
    calls = []

    @staticmethod
    def forward(ctx, x, w, factor, offset=0.0):
        Scale.calls.append(("fwd", ctx.needs_input_grad))
        ctx.save_for_backward(x, w)
        ctx.factor = factor
        return x * w * factor + offset, np.argmax(x)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        Scale.calls.append(("bwd", ctx.needs_input_grad))
        gx = g * w * ctx.factor if ctx.needs_input_grad[0] else None
        gw = g * x * ctx.factor if ctx.needs_input_grad[1] else None
        return gx, gw  # trailing None for factor omitted


def test_function_api_needs_input_grad_and_extras():
    Scale.calls.clear()
    x = tensor(np.array([1.0, 4.0]), requires_grad=True)
    w = np.array([2.0, 3.0])  # a constant ndarray
    y, idx = Scale.apply(x, w, 10.0, offset=tensor(np.ones(2)))
    assert idx == 1 and isinstance(y, Tensor)
    np.testing.assert_allclose(y.data, [21.0, 121.0])
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [20.0, 30.0])
    assert Scale.calls == [("fwd", (True, False, False)), ("bwd", (True, False, False))]
    with no_grad():
        Scale.apply(x, w, 1.0)
    assert Scale.calls[-1] == ("fwd", (False, False, False))


def test_function_rejects_differentiable_kwargs():
    x = tensor(np.ones(2), requires_grad=True)
    with pytest.raises(TypeError, match="positionally"):
        Scale.apply(x, np.ones(2), 1.0, offset=x)


def test_function_single_gradient_and_dtype_cast():
    class ToF64(Function):
        @staticmethod
        def forward(ctx, x):
            return x.astype(np.float64)

        @staticmethod
        def backward(ctx, g):
            return g  # float64; the engine casts it to the input's float32

    x = tensor(np.ones(2, np.float32), requires_grad=True)
    ToF64.apply(x).sum().backward()
    assert x.grad.dtype == np.float32


def test_function_gradient_summed_over_broadcast_axes():
    class AddBias(Function):
        @staticmethod
        def forward(ctx, x, b):
            return x + b[:, None]

        @staticmethod
        def backward(ctx, g):
            return g, g.sum(axis=2)  # (2, 3): the engine sums axis 0

    b = tensor(np.zeros(3), requires_grad=True)
    AddBias.apply(tensor(np.ones((2, 3, 4)), requires_grad=True), b).sum().backward()
    np.testing.assert_array_equal(b.grad, np.full(3, 8.0))


def test_function_bad_gradients_raise():
    class TooMany(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g, g

    class WrongShape(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g[:1]

    x = tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="2 gradients for 1 inputs"):
        TooMany.apply(x).sum().backward()
    with pytest.raises(RuntimeError, match=r"shape \(1,\).*expected \(2,\)"):
        WrongShape.apply(x).sum().backward()


def test_function_returning_none_leaves_grad_unset():
    class Stop(Function):
        @staticmethod
        def forward(ctx, x):
            return x.copy()

        @staticmethod
        def backward(ctx, g):
            return None

    x = tensor(np.ones(2), requires_grad=True)
    (Stop.apply(x) * 2).sum().backward()
    assert x.grad is None
