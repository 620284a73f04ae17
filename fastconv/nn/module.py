"""``Module`` and ``Parameter``: the PyTorch-shaped base of every layer and model.

A module owns ``Parameter``s (Tensors that require grad), buffers (plain ndarrays such as
BatchNorm's running statistics) and child modules, all registered by attribute assignment::

    class Net(Module):
        def __init__(self):
            super().__init__()
            self.conv = Conv2d(1, 6, 5)             # child module, "conv.*" keys
            self.scale = Parameter(np.ones(6))      # parameter, key "scale"
            self.register_buffer("count", np.zeros((), np.int64))

Names, traversal order and ``state_dict()`` keys are PyTorch's, so a PyTorch ``state_dict``
converted to NumPy (``{k: v.numpy() for k, v in sd.items()}``) loads unchanged.
"""
import itertools
from collections import OrderedDict, namedtuple

import numpy as np

from ..tensor import Tensor

__all__ = ["Module", "Parameter", "RemovableHandle", "StateDictError"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Parameter(Tensor):
    """A Tensor that a ``Module`` registers as a parameter when assigned as an attribute.

    Parameters
    ----------
    data : array_like or Tensor, optional
        Kept without a copy when it is an ndarray (empty float32 when omitted).
    requires_grad : bool, default True
        ``False`` freezes it: no gradient is computed for it and optimisers skip it.
    """

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty(0, np.float32)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        return (_rebuild_parameter, (self.data, self.requires_grad, self.grad))


def _rebuild_parameter(data, requires_grad, grad):
    p = Parameter(data, requires_grad)
    p.grad = grad
    return p


class RemovableHandle:
    """Returned by ``register_forward_hook``; ``remove()`` unregisters the hook."""

    _next_id = itertools.count()

    def __init__(self, hooks):
        self.hooks = hooks
        self.id = next(RemovableHandle._next_id)

    def remove(self):
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


class StateDictError(RuntimeError, KeyError, ValueError):
    """What ``load_state_dict`` raises for missing, unexpected or wrongly shaped entries.

    A ``RuntimeError`` with PyTorch's message, so code written for PyTorch catches it; also a
    ``KeyError`` (missing or unexpected keys) and a ``ValueError`` (wrong shapes), the Python
    conventions for a bad key and a bad value.
    """

    __str__ = BaseException.__str__   # KeyError would repr() the message


def _as_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"expected a floating dtype (float32 or float64), got {dtype!r}") \
            from None
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"expected a floating dtype (float32 or float64), got {dt}")
    return dt


def _addindent(text, spaces):
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _check_name(kind, name, owner):
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if "." in name:
        raise KeyError(f'{kind} name can\'t contain ".", got {name!r}')
    if name == "":
        raise KeyError(f'{kind} name can\'t be empty string ""')
    if hasattr(owner, name) and not any(name in d for d in (
            owner._parameters, owner._buffers, owner._modules)):
        raise KeyError(f"attribute {name!r} already exists")


class Module:
    """Base class of layers and models, as ``torch.nn.Module``.

    Subclasses call ``super().__init__()`` first, assign parameters, buffers and children as
    attributes and define ``forward``; calling the module runs forward hooks around
    ``forward``.
    """

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  f'"forward" function')

    def __call__(self, *args, **kwargs):
        if not (self._forward_pre_hooks or self._forward_hooks):   # the usual case
            return self.forward(*args, **kwargs)
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # ------------------------------------------------------------------ registration
    def register_parameter(self, name, param):
        """Register ``param`` (a ``Parameter`` or None) under ``name``."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        _check_name("parameter", name, self)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter "
                            f"'{name}' (fastconv.nn.Parameter or None required)")
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Register an ndarray (or None) as a buffer: saved in ``state_dict()`` when
        ``persistent``, cast by ``to()``, never trained."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        _check_name("buffer", name, self)
        self._buffers[name] = _buffer_value(name, tensor)
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        """Register ``module`` (or None) as a child under ``name``."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        _check_name("module", name, self)
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._discard(name)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter "
                                f"'{name}' (fastconv.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            if params is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._discard(name)
            self._modules[name] = value
        elif self.__dict__.get("_modules") is not None and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module "
                                f"'{name}' (fastconv.nn.Module or None expected)")
            self._modules[name] = None
        elif self.__dict__.get("_buffers") is not None and name in self._buffers:
            self._buffers[name] = _buffer_value(name, value)
        else:
            object.__setattr__(self, name, value)

    def _discard(self, name):
        self.__dict__.pop(name, None)
        for d in (self._parameters, self._buffers, self._modules):
            d.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        keys = list(super().__dir__())
        keys += list(self._parameters) + list(self._buffers) + list(self._modules)
        return sorted(set(keys))

    # --------------------------------------------------------------------- hooks
    def register_forward_hook(self, hook):
        """Call ``hook(module, inputs, output)`` after every forward; a non-None return
        replaces the output. Returns a handle whose ``remove()`` unregisters it."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook):
        """Call ``hook(module, inputs)`` before every forward; a non-None return replaces
        the inputs (a tuple, or a single value)."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # ----------------------------------------------------------------- traversal
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """``(name, module)`` for this module (name ``prefix``) and every descendant,
        depth first in registration order; each module once unless ``remove_duplicate``
        is False."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, get_members, prefix="", recurse=True, remove_duplicate=True):
        seen = set()
        modules = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                   if recurse else [(prefix, self)])
        for module_prefix, module in modules:
            for name, value in get_members(module):
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                if remove_duplicate:
                    seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """``(name, Parameter)`` pairs, names as in ``state_dict()``; a shared parameter
        is listed once."""
        return self._named_members(lambda m: m._parameters.items(), prefix, recurse,
                                   remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members(lambda m: m._buffers.items(), prefix, recurse,
                                   remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target):
        """The descendant called ``target`` ("layer1.0.conv1"); "" is this module."""
        module = self
        for part in target.split(".") if target else []:
            if part not in module._modules or module._modules[part] is None:
                raise AttributeError(f"{type(module).__name__} has no submodule {part!r}")
            module = module._modules[part]
        return module

    # ------------------------------------------------------------------- state
    def train(self, mode=True):
        """Set training mode (BatchNorm uses batch statistics, Dropout drops) on this module
        and every descendant; returns self."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        """``train(False)``; returns self."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` on every parameter (False freezes the module); returns
        self."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none=True):
        """Drop every parameter's gradient (or fill it with zeros when ``set_to_none`` is
        False)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad[...] = 0

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively) and then on self; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def to(self, dtype=None):
        """Cast floating parameters (and their gradients) and floating buffers to ``dtype``
        in place; returns self.

        The ``Parameter`` objects are kept (only their ``.data`` is replaced), so an
        optimiser built before still updates them. ``"cpu"`` is accepted and ignored.
        """
        if dtype is None or (isinstance(dtype, str) and dtype == "cpu"):
            return self
        dt = _as_dtype(dtype)
        for module in self.modules():
            for p in module._parameters.values():
                if p is not None and p.data.dtype.kind == "f" and p.data.dtype != dt:
                    p.data = p.data.astype(dt)
                    if p.grad is not None:
                        p.grad = p.grad.astype(dt)
            for name, b in module._buffers.items():
                if b is not None and b.dtype.kind == "f" and b.dtype != dt:
                    module._buffers[name] = b.astype(dt)
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def _state_items(self):
        """``(key, registry, name)`` for every parameter and persistent buffer, in
        PyTorch's ``state_dict`` order (a module's parameters, then its buffers, then its
        children)."""
        for prefix, module in self.named_modules(remove_duplicate=False):
            pre = prefix + "." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    yield pre + name, module._parameters, name
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent_buffers:
                    yield pre + name, module._buffers, name

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """``OrderedDict`` of name -> NumPy array (a copy), with PyTorch's key names.

        ``keep_vars=True`` gives the live ``Parameter``s and buffer arrays instead.
        """
        out = OrderedDict() if destination is None else destination
        for key, registry, name in self._state_items():
            value = registry[name]
            if not keep_vars:
                value = np.array(value.data if isinstance(value, Tensor) else value,
                                 copy=True)
            out[prefix + key] = value
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into the parameters and buffers, in place.

        Values may be ndarrays, Tensors or anything ``np.asarray`` takes; each is cast to
        the dtype of the array it is copied into. Nothing is copied when an error is raised.

        Parameters
        ----------
        state_dict : mapping of str -> array_like
        strict : bool, default True
            Missing or unexpected keys raise :class:`StateDictError` (a ``RuntimeError``
            listing them, as PyTorch, and also a ``KeyError``). A shape mismatch raises it in
            either mode (it is also a ``ValueError``). A value that is not a real numeric
            array (complex, string, object, None) raises ``TypeError`` naming the key.

        Returns
        -------
        namedtuple ``(missing_keys, unexpected_keys)``
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        targets = OrderedDict((key, (registry, name))
                              for key, registry, name in self._state_items())
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        errors, copies = [], []
        if strict:
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.append("Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
        for key, (registry, name) in targets.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            source = np.asarray(value.data if isinstance(value, Tensor) else value)
            if source.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: expected a real numeric array for "
                                f"{key!r}, got {type(value).__name__} of dtype {source.dtype}")
            dest = registry[name]
            dest_array = dest.data if isinstance(dest, Tensor) else dest
            if source.shape != dest_array.shape:
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{source.shape} from checkpoint, the shape in current model "
                              f"is {dest_array.shape}.")
                continue
            copies.append((dest_array, source))
        if errors:
            raise StateDictError(f"Error(s) in loading state_dict for {type(self).__name__}:"
                                 "\n\t" + "\n\t".join(errors))
        for dest_array, source in copies:
            np.copyto(dest_array, source, casting="unsafe")
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------- repr
    def extra_repr(self):
        """The text inside this module's parentheses in ``repr`` (subclasses)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({key}): " + _addindent(repr(module), 2)
                       for key, module in self._modules.items()]
        lines = extra_lines + child_lines
        main = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                main += extra_lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"


def _buffer_value(name, value):
    if value is None:
        return None
    if isinstance(value, Parameter):
        raise TypeError(f"cannot assign a Parameter as buffer '{name}'; use "
                        f"register_parameter")
    if isinstance(value, Tensor):
        value = value.data
    if not isinstance(value, np.ndarray):
        raise TypeError(f"cannot assign '{type(value).__name__}' object to buffer '{name}' "
                        f"(numpy.ndarray or None required)")
    return value
