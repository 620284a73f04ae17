"""Adam and AdamW, with PyTorch's exact order of operations."""
import numpy as np

from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam, exactly as ``torch.optim.Adam`` (its single-tensor CPU path).

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``::

        g = -g if maximize
        g = g + weight_decay * p                      (AdamW: p = p * (1 - lr * weight_decay))
        m = lerp(m, g, 1 - beta1)
        v = beta2 * v + (1 - beta2) * g * g
        v_hat = max(v_hat, v) if amsgrad else v
        denom = sqrt(v_hat) / sqrt(1 - beta2 ** t) + eps
        p = p - lr / (1 - beta1 ** t) * m / denom

    Arithmetic is in the parameter's dtype. State per parameter: ``"step"`` (a float, as
    PyTorch's), ``"exp_avg"``, ``"exp_avg_sq"`` and, with amsgrad, ``"max_exp_avg_sq"``.

    Parameters
    ----------
    params : iterable of Tensor or dict
        Parameters to optimise, or param groups (dicts with ``"params"`` and overrides).
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the running averages of the gradient and of its square.
    eps : float, default 1e-8
        Added to the denominator for numerical stability.
    weight_decay : float, default 0
        L2 penalty, added to the gradient.
    amsgrad : bool, default False
        Use the running maximum of the second moment (AMSGrad).
    maximize : bool, default False
        Ascend the objective instead of descending it.

    Examples
    --------
    >>> opt = Adam(model.parameters(), lr=1e-3)
    >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    _decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, maximize=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize)
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _check_group(self, group):
        if not 0.0 <= group["lr"]:
            raise ValueError(f"Invalid learning rate: {group['lr']}")
        if not 0.0 <= group["eps"]:
            raise ValueError(f"Invalid epsilon value: {group['eps']}")
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"expected betas to be a pair of floats, got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if not 0.0 <= group["weight_decay"]:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")

    def _update(self, param, grad, state, group):
        # Python floats, so that float32 arithmetic stays float32 (NumPy's weak scalars).
        lr, eps = float(group["lr"]), float(group["eps"])
        weight_decay = float(group["weight_decay"])
        beta1, beta2 = (float(b) for b in group["betas"])
        if not state:
            state["step"] = 0.0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

        g = np.negative(grad) if group["maximize"] else grad
        state["step"] += 1
        if weight_decay != 0:
            if self._decoupled_weight_decay:
                param *= 1 - lr * weight_decay
            else:
                decayed = np.multiply(param, weight_decay)
                decayed += g
                g = decayed

        # exp_avg.lerp_(g, 1 - beta1), with torch's two-sided formula.
        weight = 1 - beta1
        tmp = np.subtract(g, exp_avg)
        if abs(weight) < 0.5:
            tmp *= weight
            exp_avg += tmp
        else:
            tmp *= 1 - weight
            np.subtract(g, tmp, out=exp_avg)
        # exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        exp_avg_sq *= beta2
        np.multiply(g, 1 - beta2, out=tmp)
        tmp *= g
        exp_avg_sq += tmp

        step = state["step"]
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5  # not math.sqrt: as torch, to the bit
        if group["amsgrad"]:
            max_exp_avg_sq = state.setdefault("max_exp_avg_sq", np.zeros_like(param))
            np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            second_moment = max_exp_avg_sq
        else:
            second_moment = exp_avg_sq
        denom = np.sqrt(second_moment)
        denom /= bias_correction2_sqrt
        denom += eps
        # param.addcdiv_(exp_avg, denom, value=-step_size)
        np.multiply(exp_avg, -step_size, out=tmp)
        tmp /= denom
        param += tmp


class AdamW(Adam):
    """Adam with decoupled weight decay, exactly as ``torch.optim.AdamW``.

    Identical to :class:`Adam` except that weight decay shrinks the parameter directly,
    ``p = p * (1 - lr * weight_decay)``, before the Adam update instead of being added to the
    gradient; its default is ``weight_decay=1e-2``. See :class:`Adam` for the parameters.

    Examples
    --------
    >>> opt = AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    """

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)
