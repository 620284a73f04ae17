"""Check analytic gradients against float64 central differences (torch.autograd.gradcheck)."""
import numpy as np

from .autograd import no_grad
from .tensor import Tensor

__all__ = ["gradcheck", "GradcheckError"]

# Up to this many output elements the full Jacobian is compared (one backward per element);
# above it, vector-Jacobian products with a few random cotangents are.
_FULL_JACOBIAN_MAX = 256
_N_RANDOM_COTANGENTS = 3


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with central differences."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
    """Compare the gradient ``backward()`` computes with float64 central differences.

    Every Tensor in ``inputs`` with ``requires_grad`` is checked, element by element:
    ``|analytic - numeric| <= atol + rtol * |numeric|`` for each row of the Jacobian (outputs
    of up to 256 elements) or for the vector-Jacobian products with 3 random cotangents.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs)`` returns a Tensor of any shape. It is called ``2 * n + k`` times for
        ``n`` checked input elements and must be deterministic.
    inputs : Tensor or sequence
        Arguments of ``fn``; Tensors to check must be float64.
    eps : float
        Central-difference step.
    atol, rtol : float
        Tolerances, as in ``numpy.allclose``.

    Returns
    -------
    True

    Raises
    ------
    GradcheckError
        With the worst entry: input index, element index, analytic and numeric values.
    TypeError
        If a checked input is not float64, or ``fn`` does not return a Tensor.
    ValueError
        If no input requires grad, or one that does is not a leaf.

    Examples
    --------
    >>> x = Tensor(np.random.rand(3, 4), requires_grad=True)
    >>> gradcheck(lambda t: (t * t).sum(axis=1), [x])
    True
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: expected at least one input with requires_grad=True")
    for i in checked:
        if not inputs[i].is_leaf:
            raise ValueError(f"gradcheck: expected leaf tensors, input {i} is the result of "
                             "an op; pass a leaf and compute it inside fn")
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: expected float64 inputs, got {inputs[i].dtype} "
                            f"for input {i}")
    # Perturb private writable copies, and give the caller back their arrays and grads.
    saved = [(inputs[i].data, inputs[i].grad) for i in checked]
    try:
        for i in checked:
            inputs[i].data = np.array(inputs[i].data, dtype=np.float64, order="C", copy=True)
        _check(fn, inputs, checked, eps, atol, rtol)
    finally:
        for i, (data, grad) in zip(checked, saved):
            inputs[i].data, inputs[i].grad = data, grad
    return True


def _check(fn, inputs, checked, eps, atol, rtol):
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: expected fn to return a Tensor, got {type(out).__name__}")
    if out.data.size <= _FULL_JACOBIAN_MAX:
        cotangents = np.eye(out.data.size).reshape((out.data.size,) + out.shape)
    else:
        rng = np.random.default_rng(0)
        cotangents = rng.standard_normal((_N_RANDOM_COTANGENTS,) + out.shape)
    analytic = _analytic_vjps(out, inputs, checked, cotangents)
    numeric = _numeric_vjps(fn, inputs, checked, cotangents, eps)
    worst = None
    for k, i in enumerate(checked):
        excess = np.abs(analytic[k] - numeric[k]) - (atol + rtol * np.abs(numeric[k]))
        if excess.size == 0:
            continue
        r, j = np.unravel_index(np.argmax(excess), excess.shape)
        if excess[r, j] > 0 and (worst is None or excess[r, j] > worst[0]):
            worst = (excess[r, j], i, r, j, analytic[k][r, j], numeric[k][r, j],
                     int(np.count_nonzero(excess > 0)))
    if worst is not None:
        _, i, r, j, a, n, count = worst
        where = (f"output element {_position(r, out.shape)}"
                 if out.data.size <= _FULL_JACOBIAN_MAX else f"random cotangent {r}")
        raise GradcheckError(
            f"gradcheck: gradient of input {i} at element "
            f"{_position(j, inputs[i].shape)} ({where}): analytic {a:.10g} vs "
            f"numeric {n:.10g}, |diff| {abs(a - n):.3g} > atol + rtol*|numeric| = "
            f"{atol + rtol * abs(n):.3g} ({count} mismatched entries for this input)")


def _position(flat_index, shape):
    return tuple(int(k) for k in np.unravel_index(flat_index, shape))


def _analytic_vjps(out, inputs, checked, cotangents):
    """Per checked input, an array (n_cotangents, input.size) of v^T J."""
    result = [np.zeros((len(cotangents), inputs[i].data.size)) for i in checked]
    if not out.requires_grad:  # fn does not depend on any checked input
        return result
    for r, v in enumerate(cotangents):
        for i in checked:
            inputs[i].grad = None
        out.backward(v, retain_graph=True)
        for k, i in enumerate(checked):
            if inputs[i].grad is not None:
                result[k][r] = inputs[i].grad.ravel()
    return result


def _numeric_vjps(fn, inputs, checked, cotangents, eps):
    """Per checked input, v^T J from one central difference per input element."""
    flat_v = cotangents.reshape(len(cotangents), -1)
    result = []
    with no_grad():
        for i in checked:
            x = inputs[i].data.reshape(-1)  # a view of the private copy
            vjp = np.empty((len(cotangents), x.size))
            for j in range(x.size):
                orig = x[j]
                x[j] = orig + eps
                f_plus = np.asarray(fn(*inputs).data, dtype=np.float64).ravel()
                x[j] = orig - eps
                f_minus = np.asarray(fn(*inputs).data, dtype=np.float64).ravel()
                x[j] = orig
                vjp[:, j] = flat_v @ (f_plus - f_minus) / (2 * eps)
            result.append(vjp)
    return result
