"""The autograd tape: grad mode, ``Function`` (one forward/backward pair per op) and the
reverse-mode engine behind ``Tensor.backward()``.

An op is a ``Function`` subclass with two static methods on plain ndarrays::

    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, grad_out):
            a, b = ctx.saved_tensors
            ga = grad_out * b if ctx.needs_input_grad[0] else None
            gb = grad_out * a if ctx.needs_input_grad[1] else None
            return ga, gb

    y = Mul.apply(x, w)          # Tensors in, Tensor out; x and w may also be ndarrays

Gradients are plain ndarrays. The engine sums a gradient over broadcast axes when its
shape is broadcastable to, but larger than, its input's, and casts it to the input's dtype,
so elementwise backward passes can return ``grad_out * b`` as is.

Two hooks let code act while backward runs (data-parallel training starts sending a layer's
gradients while earlier layers are still being differentiated), as in PyTorch:
``Tensor.register_post_accumulate_grad_hook(hook)`` calls ``hook(leaf)`` once per backward,
as soon as that leaf's ``.grad`` holds every contribution of the pass, and
:func:`queue_callback` (called from such a hook) runs a function once the whole graph has
been walked, before ``backward()`` returns.
"""
import functools
import itertools
import threading

import numpy as np

from ._config import threads_for
from ._ext import activations as _activations

__all__ = ["Function", "no_grad", "is_grad_enabled", "backward", "queue_callback"]

_grad_mode = threading.local()
_engine = threading.local()  # .callbacks: the queue of the backward() running in this thread


def is_grad_enabled():
    """Whether ops record the graph for backward in this thread (True unless in ``no_grad``)."""
    return getattr(_grad_mode, "enabled", True)


class no_grad:
    """Context manager (or decorator) under which nothing is recorded for backward.

    Grad mode is per thread and the manager nests: leaving it restores the mode that was in
    force on entry. Results of ops inside it have ``requires_grad=False``.

    Examples
    --------
    >>> with no_grad():
    ...     y = model(x)
    """

    def __init__(self):
        self._prev = []

    def __enter__(self):
        self._prev.append(is_grad_enabled())
        _grad_mode.enabled = False
        return self

    def __exit__(self, *exc):
        _grad_mode.enabled = self._prev.pop()
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        return wrapper


class Context:
    """What one op call keeps for its backward pass.

    Attributes
    ----------
    needs_input_grad : tuple of bool
        One entry per positional argument of ``forward``: True where that argument is a
        Tensor that requires grad *and* the graph is being recorded. All False in forward
        when nothing will be recorded, so forward can skip saving and pick a cheaper path.
    saved_tensors : tuple of ndarray
        What ``save_for_backward`` stored. Any other attribute may be set on ``ctx`` too.
    """

    def __init__(self, needs_input_grad):
        self.needs_input_grad = needs_input_grad
        self._saved = ()

    def save_for_backward(self, *arrays):
        """Keep ``arrays`` (ndarrays, or None) for backward; they are released with the graph."""
        self._saved = arrays

    @property
    def saved_tensors(self):
        return self._saved


class Node:
    """A recorded op call: the Function, its ctx and, per positional input, the Tensor that
    receives a gradient (None for constants and inputs that do not require grad)."""

    __slots__ = ("function", "ctx", "inputs", "__weakref__")

    def __init__(self, function, ctx, inputs):
        self.function, self.ctx, self.inputs = function, ctx, inputs

    def free(self):
        self.ctx = self.inputs = None

    def __repr__(self):
        return f"<{self.function.__name__}Backward>"


class Function:
    """Base class of differentiable ops; subclass it and call ``apply`` (see module docstring).

    ``forward(ctx, *args, **kwargs)`` receives ndarrays in place of Tensors (other arguments
    unchanged) and returns one ndarray, or a tuple whose first item is the differentiable
    output and whose other items are returned as they are (e.g. max-pool indices).
    Keyword arguments are settings, never differentiated.

    ``backward(ctx, grad_out)`` receives the gradient of the output (an ndarray of the
    output's shape; possibly read-only or shared with another node: do not modify it in
    place) and returns one gradient per positional argument of ``forward``, None where no
    gradient is needed or the argument is not a Tensor; trailing Nones may be omitted, and a
    single input's gradient need not be wrapped in a tuple.
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad_out):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run the op on Tensors/ndarrays/scalars and return a Tensor, recording a graph node
        when grad mode is on and some positional Tensor input requires grad."""
        Tensor = _tensor_class()
        grad_mode = is_grad_enabled()
        for key, value in kwargs.items():
            if isinstance(value, Tensor):
                if value.requires_grad and grad_mode:
                    raise TypeError(f"{cls.__name__}.apply: keyword arguments are not "
                                    f"differentiated; pass {key!r} positionally")
                kwargs[key] = value.data
        arrays, needs = [], []
        for a in args:
            is_tensor = isinstance(a, Tensor)
            arrays.append(a.data if is_tensor else a)
            needs.append(is_tensor and a.requires_grad)
        record = grad_mode and any(needs)
        ctx = Context(tuple(needs) if record else (False,) * len(args))
        out = cls.forward(ctx, *arrays, **kwargs)
        extras = ()
        if isinstance(out, tuple):
            out, extras = out[0], out[1:]
        node = None
        if record:
            node = Node(cls, ctx, tuple(a if n else None for a, n in zip(args, needs)))
        result = Tensor._from_op(np.asarray(out), node)
        return (result,) + extras if extras else result


_Tensor = None


def _tensor_class():
    global _Tensor  # looked up on first use: tensor.py imports this module
    if _Tensor is None:
        from .tensor import Tensor
        _Tensor = Tensor
    return _Tensor


def _sum_to(grad, shape, node, index):
    """Reduce ``grad`` over the axes along which its input of ``shape`` was broadcast."""
    if grad.shape == shape:
        return grad
    try:
        compatible = np.broadcast_shapes(shape, grad.shape) == grad.shape
    except ValueError:
        compatible = False
    if not compatible:
        raise RuntimeError(f"{node!r} returned a gradient of shape {grad.shape} for input "
                           f"{index}, expected {shape} (or a shape it broadcasts to)")
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


class HookHandle:
    """Returned by ``Tensor.register_post_accumulate_grad_hook``; ``remove()`` unregisters."""

    _next_id = itertools.count()

    def __init__(self, hooks):
        self.hooks = hooks
        self.id = next(HookHandle._next_id)

    def remove(self):
        self.hooks.pop(self.id, None)


def queue_callback(fn):
    """Run ``fn()`` when the ``backward()`` in progress has walked the whole graph, before it
    returns (PyTorch's ``Variable._execution_engine.queue_callback``).

    Only valid while a backward pass runs in this thread, i.e. from a gradient hook:
    data-parallel training queues the wait for its in-flight gradient messages this way, so
    that every gradient is averaged by the time ``backward()`` returns. Callbacks run in the
    order queued; one may queue another.
    """
    queue = getattr(_engine, "callbacks", None)
    if queue is None:
        raise RuntimeError("queue_callback: no backward() is running in this thread")
    queue.append(fn)


def _hook_schedule(order):
    """{node index: leaves}: each leaf with post-accumulate-grad hooks under the last node
    (in walk order) that has it as an input; once that node has run, the leaf's ``.grad``
    is final for this pass."""
    last = {}
    for i, node in enumerate(order):
        for t in node.inputs:
            if t is not None and t.grad_fn is None and t._grad_hooks:
                last[id(t)] = (i, t)
    schedule = {}
    for i, t in last.values():
        schedule.setdefault(i, []).append(t)
    return schedule


def _run_grad_hooks(leaf):
    for hook in list(leaf._grad_hooks.values()):
        hook(leaf)


def _accumulate_leaf(leaf, grad):
    if leaf.grad is None:  # own a writable C-contiguous copy: grad may alias another array
        leaf.grad = np.array(grad, dtype=leaf.dtype, order="C", copy=True)
    else:
        leaf.grad += grad


def _topological_order(root):
    """Nodes reachable from ``root``, each before every node it takes input from.

    Iterative depth-first search (a 100,000-op chain must not hit the recursion limit)."""
    order, seen = [], {root}
    stack = [(root, iter(root.inputs))]
    while stack:
        node, inputs = stack[-1]
        for t in inputs:
            parent = t.grad_fn if t is not None else None
            if parent is not None and parent not in seen:
                if parent.inputs is None:
                    raise _freed_error()
                seen.add(parent)
                stack.append((parent, iter(parent.inputs)))
                break
        else:
            stack.pop()
            order.append(node)
    order.reverse()
    return order


def _freed_error():
    return RuntimeError("Trying to backward through the graph a second time: its saved "
                        "arrays were freed by the first backward(). Call backward("
                        "retain_graph=True) the first time if you need to go through it again.")


def backward(tensor, grad=None, retain_graph=False):
    """Accumulate d(tensor)/d(leaf) into the ``.grad`` of every leaf that requires grad.

    Parameters
    ----------
    tensor : Tensor
        Output to differentiate; it must require grad.
    grad : array_like or Tensor, optional
        Gradient of the final objective w.r.t. ``tensor``, of its shape. May be omitted only
        when ``tensor`` has one element (it is then 1).
    retain_graph : bool, default False
        Keep the graph (and its saved arrays) for another backward. By default every node is
        freed once walked, and a second backward through it raises ``RuntimeError``.
    """
    if not tensor.requires_grad:
        raise RuntimeError("backward(): the tensor does not require grad and has no grad_fn")
    if grad is None:
        if tensor.data.size != 1:
            raise RuntimeError("backward(): grad can be omitted only for a one-element tensor, "
                               f"got shape {tensor.shape}; pass grad of that shape")
        grad = np.ones(tensor.shape, dtype=tensor.dtype)
    else:
        grad = np.asarray(grad.data if isinstance(grad, _tensor_class()) else grad)
        if grad.shape != tensor.shape:
            raise ValueError(f"backward(): expected grad of shape {tensor.shape}, "
                             f"got {grad.shape}")
        grad = grad.astype(tensor.dtype, copy=False)
    root = tensor.grad_fn
    if root is not None and root.inputs is None:
        raise _freed_error()
    outer, _engine.callbacks = getattr(_engine, "callbacks", None), []
    try:
        if root is None:
            _accumulate_leaf(tensor, grad)
            if tensor._grad_hooks:
                _run_grad_hooks(tensor)
        else:
            _walk(root, grad, retain_graph)
        queue = _engine.callbacks
        while queue:
            queue.pop(0)()
    finally:
        _engine.callbacks = outer


def _walk(root, grad, retain_graph):
    order = _topological_order(root)
    schedule = _hook_schedule(order)
    received = set() if schedule else None  # ids of hooked leaves given a gradient
    grads = {root: grad}
    for i, node in enumerate(order):
        grad_out = grads.pop(node, None)
        if grad_out is not None:
            _run_node(node, grad_out, grads, received)
        if not retain_graph:
            node.free()
        for leaf in schedule.get(i, ()):
            if id(leaf) in received:
                _run_grad_hooks(leaf)


# Same-shaped float arrays at least this large are added by the multithreaded kernel (the
# same bits as NumPy's single-threaded add, which a residual network's gradient sums and
# skip connections otherwise wait on); smaller ones by NumPy, whose call costs less.
_KERNEL_ADD_MIN = 1 << 16


def add_arrays(a, b):
    """``a + b`` for ndarrays: NumPy's result (broadcasting, type promotion), by the kernel
    when both are C-contiguous float32/float64 of one shape and dtype and large."""
    if (a.shape == b.shape and a.dtype == b.dtype and a.size >= _KERNEL_ADD_MIN
            and a.dtype in (np.float32, np.float64) and a.flags.c_contiguous
            and b.flags.c_contiguous):
        out = np.empty_like(a)
        _activations.add_forward(a.reshape(-1), b.reshape(-1), out.reshape(-1),
                                threads_for(out.size))
        return out
    return a + b


def _run_node(node, grad_out, grads, received=None):
    in_grads = node.function.backward(node.ctx, grad_out)
    if not isinstance(in_grads, (tuple, list)):
        in_grads = (in_grads,)
    if len(in_grads) > len(node.inputs):
        raise RuntimeError(f"{node!r} returned {len(in_grads)} gradients for "
                           f"{len(node.inputs)} inputs")
    for i, (t, g) in enumerate(zip(node.inputs, in_grads)):
        if t is None or g is None:
            continue
        g = _sum_to(np.asarray(g), t.shape, node, i).astype(t.dtype, copy=False)
        if t.grad_fn is None:
            _accumulate_leaf(t, g)
            if received is not None and t._grad_hooks:
                received.add(id(t))
        elif t.grad_fn in grads:
            grads[t.grad_fn] = add_arrays(grads[t.grad_fn], g)  # out of place: g may alias
        else:
            grads[t.grad_fn] = g
