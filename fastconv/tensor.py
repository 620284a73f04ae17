"""``Tensor``: an ndarray with a gradient, and the differentiable array ops on it."""
import math

import numpy as np

from . import autograd
from .autograd import Function

__all__ = ["Tensor", "tensor"]


def _as_array(data, dtype=None):
    """ndarray view of ``data``, without copying arrays; Python floats become float32."""
    if isinstance(data, Tensor):
        data = data.data
    from_python = not isinstance(data, (np.ndarray, np.generic))
    array = np.asarray(data, dtype=dtype)
    if dtype is None and from_python and array.dtype == np.float64:
        array = array.astype(np.float32)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"Tensor: expected bool, integer or float data, got dtype {array.dtype}")
    return array


def _check_grad_dtype(dtype):
    if dtype.kind != "f":
        raise TypeError(f"only floating-point tensors can require grad, got dtype {dtype}")


class Tensor:
    """An ndarray (``.data``) plus, when it requires grad, its gradient (``.grad``).

    Parameters
    ----------
    data : array_like or Tensor
        An ndarray (or a Tensor's) is kept as is, without a copy; other data is converted as
        by ``tensor()`` (Python floats become float32).
    requires_grad : bool, default False
        Record ops on this tensor so that ``backward()`` fills ``.grad``. Only for
        floating-point data (``TypeError`` otherwise).

    Examples
    --------
    >>> x = Tensor(np.ones((2, 3)), requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    array([[2., 2., 2.],
           [2., 2., 2.]])
    """

    # ndarray binary ops defer to ours, so ``ndarray * Tensor`` is differentiable.
    __array_priority__ = 1000
    _grad_hooks = None  # {id: hook} once register_post_accumulate_grad_hook is called

    def __init__(self, data, requires_grad=False):
        self.data = _as_array(data)
        self.grad = None
        self.grad_fn = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _from_op(cls, data, grad_fn):
        out = cls.__new__(cls)
        out.data, out.grad, out.grad_fn = data, None, grad_fn
        out._requires_grad = grad_fn is not None
        return out

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        if self.grad_fn is not None:
            raise RuntimeError("requires_grad can only be changed on leaf tensors; "
                               "use .detach() to get a leaf")
        if value:
            _check_grad_dtype(self.data.dtype)
        self._requires_grad = bool(value)

    @property
    def is_leaf(self):
        return self.grad_fn is None

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    T = property(lambda self: self.transpose())

    def numpy(self):
        """The underlying ndarray (shared, not copied)."""
        return self.data

    def item(self):
        return self.data.item()

    def detach(self):
        """A new leaf sharing ``data``, cut from the graph."""
        return Tensor(self.data)

    def zero_grad(self):
        """Drop the gradient (``.grad = None``), as PyTorch does by default."""
        self.grad = None

    def backward(self, grad=None, retain_graph=False):
        """Accumulate the gradient of this tensor into every leaf's ``.grad``; see
        ``fastconv.autograd.backward``."""
        autograd.backward(self, grad, retain_graph)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` in every ``backward()`` that reaches this leaf, once its
        ``.grad`` holds all of that pass's contributions (as PyTorch's method of this name).

        The hook may read or replace ``.grad``; its return value is ignored. Used to start
        work on a gradient while the rest of the graph is still being differentiated (see
        ``fastconv.autograd.queue_callback``). Returns a handle whose ``remove()``
        unregisters the hook.
        """
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks can only be registered on leaf "
                               "tensors")
        if not callable(hook):
            raise TypeError(f"expected a callable hook, got {type(hook).__name__}")
        if self._grad_hooks is None:
            self._grad_hooks = {}
        handle = autograd.HookHandle(self._grad_hooks)
        self._grad_hooks[handle.id] = hook
        return handle

    def __len__(self):
        return len(self.data)

    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return np.asarray(self.data, dtype)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        return bool(self.data)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = "" if self.dtype == np.float32 else f", dtype={self.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn={self.grad_fn!r}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __hash__ = object.__hash__  # identity, as PyTorch; == is not elementwise

    # Arithmetic. Python scalars stay Python scalars, so NumPy's weak-scalar promotion keeps
    # float32 tensors float32.
    def __add__(self, other): return Add.apply(self, _operand(other))
    def __radd__(self, other): return Add.apply(_operand(other), self)
    def __sub__(self, other): return Sub.apply(self, _operand(other))
    def __rsub__(self, other): return Sub.apply(_operand(other), self)
    def __mul__(self, other): return Mul.apply(self, _operand(other))
    def __rmul__(self, other): return Mul.apply(_operand(other), self)
    def __truediv__(self, other): return Div.apply(self, _operand(other))
    def __rtruediv__(self, other): return Div.apply(_operand(other), self)
    def __matmul__(self, other): return MatMul.apply(self, _operand(other))
    def __rmatmul__(self, other): return MatMul.apply(_operand(other), self)
    def __pow__(self, other): return Pow.apply(self, _operand(other))
    def __rpow__(self, other): return Pow.apply(_operand(other), self)
    def __neg__(self): return Neg.apply(self)
    def __pos__(self): return self

    # Comparisons give plain boolean ndarrays and are not differentiable.
    def __lt__(self, other): return self.data < _operand_data(other)
    def __le__(self, other): return self.data <= _operand_data(other)
    def __gt__(self, other): return self.data > _operand_data(other)
    def __ge__(self, other): return self.data >= _operand_data(other)

    def sum(self, axis=None, keepdims=False):
        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return Mean.apply(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        """``reshape(2, -1)`` or ``reshape((2, -1))``, as ndarray.reshape."""
        return Reshape.apply(self, shape=_varargs(shape))

    def flatten(self, start_dim=1):
        """Merge dims ``start_dim`` and after into one (batch dim kept by default)."""
        if self.ndim == 0:
            return self.reshape(1)
        if not -self.ndim <= start_dim < self.ndim:
            raise ValueError(f"flatten: expected start_dim in [{-self.ndim}, {self.ndim - 1}], "
                             f"got {start_dim}")
        start_dim %= self.ndim
        return self.reshape(self.shape[:start_dim] + (math.prod(self.shape[start_dim:]),))

    def transpose(self, *axes):
        """Permute dims; no argument reverses them, as ndarray.transpose."""
        return Transpose.apply(self, axes=_varargs(axes) or None)

    def __getitem__(self, index):
        return GetItem.apply(self, index=_index_data(index))


def tensor(array_like, requires_grad=False, dtype=None):
    """Make a Tensor from a list, ndarray or Tensor.

    Python floats become float32 (as in PyTorch); NumPy arrays keep their dtype unless
    ``dtype`` is given. The data is copied only when a conversion needs it.

    Examples
    --------
    >>> tensor([1.0, 2.0]).dtype
    dtype('float32')
    """
    return Tensor(_as_array(array_like, None if dtype is None else np.dtype(dtype)),
                  requires_grad=requires_grad)


def _operand(x):
    """Tensors and Python scalars as they are (scalars stay weakly typed), else an ndarray."""
    if isinstance(x, (Tensor, int, float)):
        return x
    return np.asarray(x)


def _operand_data(x):
    return x.data if isinstance(x, Tensor) else x


def _varargs(args):
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else args


def _index_data(index):
    if isinstance(index, tuple):
        return tuple(_operand_data(i) for i in index)
    return _operand_data(index)


# Each backward returns the gradient at the output's (broadcast) shape; the engine sums it
# back to each operand's shape.
class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return np.add(a, b)

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return np.subtract(a, b)

    @staticmethod
    def backward(ctx, g):
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(b if ctx.needs_input_grad[0] else None,
                              a if ctx.needs_input_grad[1] else None)
        return np.multiply(a, b)

    @staticmethod
    def backward(ctx, g):
        b, a = ctx.saved_tensors
        return (None if b is None else g * b), (None if a is None else g * a)


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.true_divide(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = g / b if ctx.needs_input_grad[0] else None
        gb = -g * a / (b * b) if ctx.needs_input_grad[1] else None
        return ga, gb


class Pow(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = np.power(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        ga = g * b * np.power(a, b - 1) if ctx.needs_input_grad[0] else None
        gb = g * out * np.log(a) if ctx.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return np.negative(a)

    @staticmethod
    def backward(ctx, g):
        return -g


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        # View 1-D operands as a row (a) / column (b) matrix so one batched formula serves all.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g[..., None] if b.ndim == 1 else g
        g2 = g2[..., None, :] if a.ndim == 1 else g2
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = g2 @ np.swapaxes(b2, -1, -2)
            ga = ga.reshape(ga.shape[:-2] + a.shape[-1:]) if a.ndim == 1 else ga
        if ctx.needs_input_grad[1]:
            gb = np.swapaxes(a2, -1, -2) @ g2
            gb = gb.reshape(gb.shape[:-2] + b.shape[:1]) if b.ndim == 1 else gb
        return ga, gb


def _expand_reduced(g, shape, axis, keepdims):
    if axis is not None and not keepdims:
        g = np.expand_dims(g, axis)
    return np.broadcast_to(g, shape)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return np.sum(a, axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return _expand_reduced(g, ctx.shape, ctx.axis, ctx.keepdims)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        out = np.mean(a, axis=axis, keepdims=keepdims)
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        ctx.count = a.size // out.size if out.size else 0
        return out

    @staticmethod
    def backward(ctx, g):
        scale = 1.0 / ctx.count if ctx.count else 0.0
        return _expand_reduced(g * scale, ctx.shape, ctx.axis, ctx.keepdims)


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes=None):
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        if ctx.axes is None:
            return g.transpose()
        return g.transpose(np.argsort([ax % g.ndim for ax in ctx.axes]))


def _is_basic_index(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, slice)
               or (isinstance(p, (int, np.integer)) and not isinstance(p, bool)) for p in parts)


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return a[index]

    @staticmethod
    def backward(ctx, g):
        ga = np.zeros(ctx.shape, dtype=ctx.dtype)
        if _is_basic_index(ctx.index):
            ga[ctx.index] = g  # a view: each element picked at most once
        else:
            np.add.at(ga, ctx.index, g)  # repeated indices must add up
        return ga
