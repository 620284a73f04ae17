"""Tensor construction, properties, dtype rules and forward values of the array ops."""
import numpy as np
import pytest

from fastconv.tensor import Tensor, tensor


def test_tensor_keeps_ndarray_without_copy():
    a = np.arange(6.0).reshape(2, 3)
    assert Tensor(a).data is a
    t = Tensor(a, requires_grad=True)
    assert Tensor(t).data is a and not Tensor(t).requires_grad
    assert tensor(a).data is a
    assert tensor(t).data is a


def test_tensor_keeps_noncontiguous_and_readonly_arrays():
    a = np.arange(12.0).reshape(3, 4).T
    a.flags.writeable = False
    t = Tensor(a, requires_grad=True)
    assert t.data is a
    (t * 2.0).sum().backward()
    np.testing.assert_array_equal(t.grad, np.full((4, 3), 2.0))


def test_python_floats_default_to_float32():
    assert tensor([1.0, 2.0]).dtype == np.float32
    assert tensor(1.5).dtype == np.float32
    assert Tensor([[1.0, 2.0]]).dtype == np.float32
    assert tensor([1.0, 2.0], dtype=np.float64).dtype == np.float64
    assert tensor([1, 2], dtype="float64").dtype == np.float64


def test_numpy_dtypes_are_kept():
    assert tensor(np.zeros(3)).dtype == np.float64
    assert tensor(np.zeros(3, np.float32)).dtype == np.float32
    assert tensor(np.float64(2.0)).dtype == np.float64
    assert tensor([1, 2, 3]).dtype == np.int64
    assert tensor([True, False]).dtype == np.bool_


def test_integer_data_allowed_without_grad():
    target = tensor(np.array([0, 3, 1]))
    assert target.dtype == np.int64 and not target.requires_grad


@pytest.mark.parametrize("data", [np.arange(3), np.array([True]), np.arange(3, dtype=np.uint8)])
def test_requires_grad_on_non_float_raises_type_error_naming_dtype(data):
    with pytest.raises(TypeError, match=str(data.dtype)):
        Tensor(data, requires_grad=True)
    with pytest.raises(TypeError, match=str(data.dtype)):
        tensor(data, requires_grad=True)
    t = Tensor(data)
    with pytest.raises(TypeError, match=str(data.dtype)):
        t.requires_grad = True


def test_non_numeric_data_raises_type_error():
    with pytest.raises(TypeError, match="<U1"):
        tensor(["a", "b"])
    with pytest.raises(TypeError, match="object"):
        Tensor(np.array([None]))


def test_properties():
    a = np.zeros((2, 3, 4), np.float32)
    t = Tensor(a, requires_grad=True)
    assert t.shape == (2, 3, 4) and t.dtype == np.float32 and t.ndim == 3 and len(t) == 2
    assert t.numpy() is a and t.grad is None and t.grad_fn is None and t.is_leaf
    assert tensor([[2.5]]).item() == 2.5
    assert float(tensor([3.0])) == 3.0
    assert np.asarray(t) is a
    assert t.T.shape == (4, 3, 2)


def test_requires_grad_settable_on_leaves_only():
    x = tensor([1.0, 2.0])
    x.requires_grad = True
    assert x.requires_grad
    x.requires_grad = False
    assert not x.requires_grad
    x.requires_grad = True
    y = x * 2
    assert y.requires_grad and not y.is_leaf
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False


def test_repr():
    x = tensor([1.0, 2.0], requires_grad=True)
    assert repr(x) == "tensor([1., 2.], requires_grad=True)"
    assert "grad_fn=<MulBackward>" in repr(x * 2)
    assert "dtype=float64" in repr(tensor(np.zeros(2)))
    assert "dtype=int64" in repr(tensor([1, 2]))


def test_identity_hash_and_equality():
    a, b = tensor([1.0]), tensor([1.0])
    assert a == a and a != b
    assert len({a, b}) == 2
    assert {a: 1}[a] == 1
    assert (np.zeros(1) == a) is False


def test_comparisons_return_plain_arrays():
    t = tensor([1.0, 2.0, 3.0], requires_grad=True)
    for result in (t < 2, t <= 2, t > 2.0, t >= np.array(2.0), t > tensor([0.0, 5.0, 1.0])):
        assert isinstance(result, np.ndarray) and result.dtype == np.bool_
    np.testing.assert_array_equal(t > 2, [False, False, True])


SCALAR_OPS = [
    lambda t: t + 2.0, lambda t: 2.0 + t, lambda t: t - 1, lambda t: 1 - t,
    lambda t: t * 2.0, lambda t: 2 * t, lambda t: t / 3.0, lambda t: 3 / t,
    lambda t: t ** 2, lambda t: t ** 0.5, lambda t: 2.0 ** t, lambda t: -t,
    lambda t: t.mean(), lambda t: t.sum(axis=0), lambda t: t[0], lambda t: t.T,
]


@pytest.mark.parametrize("op", SCALAR_OPS)
def test_float32_stays_float32_with_python_scalars(op):
    x = tensor(np.random.default_rng(0).uniform(0.5, 2.0, (2, 3)).astype(np.float32),
               requires_grad=True)
    y = op(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_elementwise_promotion_follows_numpy():
    f32 = tensor(np.ones(3, np.float32), requires_grad=True)
    f64 = tensor(np.ones(3), requires_grad=True)
    assert (f32 + f64).dtype == np.float64
    assert (f32 * np.ones(3)).dtype == np.float64
    assert (np.ones(3, np.float32) * f64).dtype == np.float64
    assert (tensor([1, 2]) * 2.5).dtype == np.float64  # int tensor times Python float
    assert (tensor([1, 2]) / tensor([2, 2])).dtype == np.float64
    (f32 * f64).sum().backward()
    assert f32.grad.dtype == np.float32 and f64.grad.dtype == np.float64


@pytest.mark.parametrize("op, ref", [
    (lambda a, t: a * t, lambda a, x: a * x), (lambda a, t: a + t, lambda a, x: a + x),
    (lambda a, t: a - t, lambda a, x: a - x), (lambda a, t: a / t, lambda a, x: a / x),
    (lambda a, t: a ** t, lambda a, x: a ** x), (lambda a, t: a @ t.T, lambda a, x: a @ x.T),
])
def test_ndarray_on_the_left_defers_to_tensor(op, ref):
    a = np.random.default_rng(1).uniform(0.5, 2, (3, 3))
    x = np.random.default_rng(2).uniform(0.5, 2, (3, 3))
    out = op(a, tensor(x, requires_grad=True))
    assert isinstance(out, Tensor) and out.requires_grad
    np.testing.assert_allclose(out.data, ref(a, x))


def test_forward_values_match_numpy(rng):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))
    ta, tb = tensor(a), tensor(b)
    np.testing.assert_allclose((ta @ tb).data, a @ b)
    np.testing.assert_allclose(ta.sum(axis=(0, -1)).data, a.sum(axis=(0, -1)))
    np.testing.assert_allclose(ta.mean(axis=1, keepdims=True).data, a.mean(1, keepdims=True))
    assert ta.sum().shape == () and ta.mean().shape == ()
    np.testing.assert_allclose(ta.reshape(4, -1).data, a.reshape(4, -1))
    np.testing.assert_allclose(ta.reshape((6, 4)).data, a.reshape(6, 4))
    np.testing.assert_allclose(ta.flatten().data, a.reshape(2, 12))
    np.testing.assert_allclose(ta.flatten(0).data, a.ravel())
    np.testing.assert_allclose(ta.flatten(-2).data, a.reshape(2, 12))
    np.testing.assert_allclose(ta.transpose().data, a.T)
    np.testing.assert_allclose(ta.transpose(1, 0, 2).data, a.transpose(1, 0, 2))
    np.testing.assert_allclose(ta.transpose((2, 0, 1)).data, a.transpose(2, 0, 1))
    np.testing.assert_allclose((ta ** 2).data, a ** 2)
    np.testing.assert_allclose((-ta).data, -a)


def test_flatten_zero_batch_and_bad_dim():
    t = tensor(np.zeros((0, 3, 4)))
    assert t.flatten().shape == (0, 12)
    with pytest.raises(ValueError, match="start_dim"):
        tensor(np.zeros(3)).flatten(1)


def test_indexing_forward(rng):
    a = rng.standard_normal((4, 5))
    t = tensor(a)
    np.testing.assert_array_equal(t[1].data, a[1])
    np.testing.assert_array_equal(t[1:3, ::2].data, a[1:3, ::2])
    np.testing.assert_array_equal(t[..., None, 0].data, a[..., None, 0])
    np.testing.assert_array_equal(t[[0, 0, 3]].data, a[[0, 0, 3]])
    np.testing.assert_array_equal(t[a > 0].data, a[a > 0])
    np.testing.assert_array_equal(t[tensor([2, 1]), 0].data, a[[2, 1], 0])


def test_detach_and_zero_grad():
    x = tensor([1.0, 2.0], requires_grad=True)
    y = (x * 3).detach()
    assert not y.requires_grad and y.grad_fn is None
    d = x.detach()
    assert d.data is x.data
    (x * x).sum().backward()
    x.zero_grad()
    assert x.grad is None
