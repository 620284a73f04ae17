"""Stochastic gradient descent, with PyTorch's momentum, Nesterov and weight-decay rules."""
import numpy as np

from .optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent (optionally with momentum), exactly as ``torch.optim.SGD``.

    For each parameter ``p`` with gradient ``g``, every step::

        g = -g if maximize
        g = g + weight_decay * p
        if momentum:
            b = g on the first step, else momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        p = p - lr * g

    Parameters
    ----------
    params : iterable of Tensor or dict
        Parameters to optimise, or param groups (dicts with ``"params"`` and overrides).
    lr : float, default 1e-3
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
        L2 penalty, added to the gradient.
    nesterov : bool, default False
        Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
    maximize : bool, default False
        Ascend the objective instead of descending it.

    Examples
    --------
    >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _check_group(self, group):
        if group["lr"] < 0.0:
            raise ValueError(f"Invalid learning rate: {group['lr']}")
        if group["momentum"] < 0.0:
            raise ValueError(f"Invalid momentum value: {group['momentum']}")
        if group["weight_decay"] < 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _update(self, param, grad, state, group):
        # Python floats, so that float32 arithmetic stays float32 (NumPy's weak scalars).
        lr, momentum = float(group["lr"]), float(group["momentum"])
        dampening, weight_decay = float(group["dampening"]), float(group["weight_decay"])
        d_p = np.negative(grad) if group["maximize"] else grad
        if weight_decay != 0:
            decayed = np.multiply(param, weight_decay)
            decayed += d_p
            d_p = decayed
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(d_p, copy=True)
            else:
                buf *= momentum
                buf += d_p if dampening == 0 else (1 - dampening) * d_p
            if group["nesterov"]:
                ahead = np.multiply(buf, momentum)
                ahead += d_p
                d_p = ahead
            else:
                d_p = buf
        param -= lr * d_p
