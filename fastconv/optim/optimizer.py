"""``Optimizer``: the base class of every optimiser, in PyTorch's shape.

An optimiser holds ``param_groups`` (a list of dicts, each with ``"params"`` and that group's
hyper-parameters) and ``state`` (a dict per parameter, keyed by the parameter itself).
``step()`` updates every parameter's ``.data`` in place, so a module holding the array sees
the new values, and works on plain ndarrays: nothing is recorded on the autograd tape.
"""
import copy
from collections import defaultdict
from itertools import chain

import numpy as np

from ..tensor import Tensor

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    """Marks a hyper-parameter that every param group must give (PyTorch's ``required``)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()

_SET_ERROR = ("optimizer parameters need to be organized in ordered collections, but the "
              "ordering of tensors in sets will change between runs. Please use a list instead.")


class Optimizer:
    """Base class of optimisers.

    Parameters
    ----------
    params : iterable of Tensor or iterable of dict
        The tensors to optimise, or dicts each with a ``"params"`` entry and per-group
        hyper-parameters that override ``defaults``.
    defaults : dict
        Default hyper-parameters for the groups.

    Notes
    -----
    Subclasses implement ``_update(param, grad, state, group)`` on ndarrays (``param`` is the
    parameter's ``.data``, to be changed in place; ``grad`` has its shape and dtype) and
    ``_check_group(group)`` to validate hyper-parameters; ``step()`` calls ``_update`` once per
    parameter that requires grad and has a gradient. Parameters without a gradient
    (``grad is None``) or with ``requires_grad=False`` (frozen) are skipped.
    """

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {type(params).__name__}")
        if isinstance(params, set):
            raise TypeError(_SET_ERROR)
        self.defaults = dict(defaults)
        self.state = defaultdict(dict)
        self.param_groups = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {key}: {group[key]}" for key in sorted(group) if key != "params")
        lines.append(")")
        return "\n".join(lines)

    def _check_group(self, group):
        """Raise ``ValueError`` for an invalid hyper-parameter in ``group``; subclasses."""

    def add_param_group(self, param_group):
        """Add a group of parameters, with its own hyper-parameters (the others default).

        Useful to unfreeze layers while training. A parameter may belong to one group only.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        param_group = dict(param_group)
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(_SET_ERROR)
        params = list(params)
        for param in params:
            if not isinstance(param, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                f"{type(param).__name__}")
            if not param.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        param_group["params"] = params

        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError("parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            param_group.setdefault(name, default)
        self._check_group(param_group)

        # PyTorch only warns for a repeat inside a group; a parameter updated twice per step
        # is always a bug, so it is an error here as it is across groups.
        ids = {id(p) for p in params}
        if len(ids) != len(params):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if not seen.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none=True):
        """Reset the gradients: drop them (``None``, the default) or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.fill(0)

    def step(self, closure=None):
        """Update every parameter that requires grad and has a gradient, in place.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss; called before the update.

        Returns
        -------
        The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                grad = _grad_of(p)
                if grad is not None:
                    state = self.state[p]
                    self._update(p.data, grad, state, group)
                    if not state:  # e.g. SGD without momentum: keep no entry, as PyTorch
                        del self.state[p]
        return loss

    def _update(self, param, grad, state, group):
        raise NotImplementedError

    def state_dict(self):
        """The optimiser's state as a dict, in PyTorch's format (arrays are copies).

        ``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}``, where
        a parameter's index is its position in the concatenation of all groups' params.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            start = len(index)
            index.update((id(p), start + i) for i, p in enumerate(group["params"]))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            key = index[id(p)] if isinstance(p, Tensor) else p
            state[key] = copy.deepcopy(s)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a state from ``state_dict()``: hyper-parameters and per-parameter state.

        Groups must match this optimiser's in number and sizes (``ValueError`` otherwise).
        Arrays are copied, and floating-point ones cast to their parameter's dtype.
        """
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups: "
                             f"expected {len(self.param_groups)}, got {len(saved_groups)}")
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(
                    f"loaded state dict contains a parameter group that doesn't match the size "
                    f"of optimizer's group {i}: expected {len(group['params'])} params, "
                    f"got {len(saved['params'])}")
        id_map = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in self.param_groups)))
        state = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in id_map:
                param = id_map[key]
                state[param] = {k: _cast_state(param, k, v) for k, v in value.items()}
            else:
                state[key] = copy.deepcopy(value)
        groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            saved["params"] = group["params"]
            for name, default in self.defaults.items():  # state saved before a new option
                saved.setdefault(name, default)
            groups.append(saved)
        self.state = state
        self.param_groups = groups


def _grad_of(p):
    """``p.grad`` as an ndarray of ``p``'s shape and dtype, or None to skip ``p``."""
    if not p.requires_grad or p.grad is None:
        return None
    grad = np.asarray(p.grad, dtype=p.data.dtype)
    if grad.shape != p.data.shape:
        raise ValueError(f"expected a gradient of shape {p.data.shape} for the parameter, "
                         f"got {grad.shape}")
    return grad


def _cast_state(param, key, value):
    """A copy of one state value; floating-point arrays take ``param``'s dtype (PyTorch's
    policy, which keeps ``"step"`` as it is)."""
    if isinstance(value, np.ndarray) and key != "step":
        dtype = param.data.dtype if value.dtype.kind == "f" else value.dtype
        return np.array(value, dtype=dtype, copy=True)
    return copy.deepcopy(value)
