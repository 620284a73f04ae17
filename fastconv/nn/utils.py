"""Gradient and regularisation utilities: ``clip_grad_norm_``, ``clip_grad_value_``,
``l1_penalty``, ``parameters_to_vector`` / ``vector_to_parameters``."""
import math

import numpy as np

from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "l1_penalty", "parameters_to_vector",
           "vector_to_parameters"]


def _as_list(parameters):
    if isinstance(parameters, Tensor):
        return [parameters]
    return list(parameters)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale gradients in place so that their total norm is at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_``.

    The total norm is the ``norm_type``-norm of all gradients taken together as one vector
    (``inf``: the largest absolute value). When it exceeds ``max_norm`` every gradient is
    multiplied by ``max_norm / (total_norm + 1e-6)``. Parameters without a gradient are
    ignored.

    Parameters
    ----------
    parameters : Tensor or iterable of Tensor
    max_norm : float
    norm_type : float or inf, default 2.0
    error_if_nonfinite : bool, default False
        Raise ``RuntimeError`` when the total norm is nan or inf (gradients left unchanged).

    Returns
    -------
    numpy.float64
        The total norm before clipping.

    Examples
    --------
    >>> clip_grad_norm_(model.parameters(), max_norm=1.0)   # doctest: +SKIP
    """
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        return np.float64(0.0)
    if norm_type == math.inf:
        norms = [np.max(np.abs(g)) if g.size else 0.0 for g in grads]
        total = np.float64(max(float(n) for n in norms))
    else:
        # Norm of the per-tensor norms, as PyTorch (the same number as one flat norm).
        norms = np.array([np.linalg.norm(g.ravel().astype(np.float64), norm_type)
                          for g in grads])
        total = np.float64(np.linalg.norm(norms, norm_type))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                           "`parameters` is non-finite, so it cannot be clipped. To disable "
                           "this error and scale the gradients by the non-finite norm anyway, "
                           "set `error_if_nonfinite=False`")
    coef = min(max_norm / (total + 1e-6), 1.0)
    if coef < 1.0 or not np.isfinite(coef):
        with np.errstate(invalid="ignore"):    # inf * 0 = nan, as PyTorch
            for g in grads:
                g *= g.dtype.type(coef)
    return total


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient in place to ``[-clip_value, clip_value]``."""
    clip_value = float(clip_value)
    for p in _as_list(parameters):
        if p.grad is not None:
            np.clip(p.grad, -clip_value, clip_value, out=p.grad)


def l1_penalty(parameters):
    """L1 regularisation term ``sum over parameters of sum |p|``, as a differentiable Tensor.

    Add ``lam * l1_penalty(model.parameters())`` to the loss; its gradient is
    ``lam * sign(p)`` (0 at 0, the subgradient PyTorch's ``abs`` uses). Frozen parameters
    (``requires_grad=False``) contribute to the value but get no gradient. (L2 is the
    optimisers' ``weight_decay``.)

    Examples
    --------
    >>> loss = criterion(model(x), y) + 1e-4 * l1_penalty(model.parameters())  # doctest: +SKIP
    """
    total = None
    for p in _as_list(parameters):
        # |p| = p * sign(p) with sign(p) a constant: d|p|/dp = sign(p).
        term = (p * np.sign(p.data)).sum()
        total = term if total is None else total + term
    if total is None:
        return Tensor(np.zeros((), np.float32))
    return total


def parameters_to_vector(parameters):
    """All parameters' values concatenated into one 1-D ndarray (a copy)."""
    arrays = [p.data.ravel() for p in _as_list(parameters)]
    return np.concatenate(arrays) if arrays else np.empty(0, np.float32)


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of ``vec`` into the parameters, in place."""
    vec = np.asarray(vec.data if isinstance(vec, Tensor) else vec)
    params = _as_list(parameters)
    total = sum(p.data.size for p in params)
    if vec.ndim != 1 or vec.size != total:
        raise ValueError(f"expected a 1-D vector of {total} elements, got shape {vec.shape}")
    offset = 0
    for p in params:
        n = p.data.size
        p.data[...] = vec[offset:offset + n].reshape(p.data.shape)
        offset += n
