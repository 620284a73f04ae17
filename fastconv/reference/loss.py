"""Plain NumPy reference for the losses: log_softmax, cross_entropy, nll_loss, mse_loss,
l1_loss, forward and input gradient.

Cross entropy is written in its most general form, for a target *distribution* q per
sample and class weights w::

    loss_i = -sum_c w_c q_ic log p_ic,      p_i = softmax(x_i)
    d loss_i / d x_ic = p_ic sum_c' w_c' q_ic' - w_c q_ic

Class-index targets t with label smoothing e are the distribution
``q = (1 - e) onehot(t) + e / C`` (all-zero for ignored samples), which expands to PyTorch's
``(1 - e) nll + e / C * sum_c -w_c log p_c``. "mean" divides by ``sum_i w[t_i]`` over the
non-ignored samples for index targets and by the number of samples for probability targets,
as PyTorch. Inputs are (N, C), (N, C, d1, ...) or (C,); the class dim is 1 (0 for (C,)).
Imports only NumPy.
"""
import numpy as np

__all__ = [
    "log_softmax",
    "softmax",
    "cross_entropy",
    "cross_entropy_backward",
    "nll_loss",
    "nll_loss_backward",
    "mse_loss",
    "mse_loss_backward",
    "l1_loss",
    "l1_loss_backward",
]


def log_softmax(x, axis=1):
    """log(softmax(x)) along ``axis``, stable: the max is subtracted before exp."""
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def softmax(x, axis=1):
    return np.exp(log_softmax(x, axis))


def _axis(x):
    return 1 if x.ndim > 1 else 0


def _distribution(x, target, ignore_index, label_smoothing):
    """(q, divisor weights per sample or None): the target distribution over the class axis."""
    axis, c = _axis(x), x.shape[_axis(x)]
    if np.issubdtype(target.dtype, np.integer):
        valid = target != ignore_index
        safe = np.where(valid, target, 0)
        onehot = np.moveaxis(np.eye(c)[safe], -1, axis)
        q = (1 - label_smoothing) * onehot + label_smoothing / c
        q = q * np.expand_dims(valid, axis)
        return q, valid, safe
    q = (1 - label_smoothing) * target + label_smoothing / c
    return q, None, None


def _mean_divisor(x, target, weight, valid, safe):
    if valid is None:                        # probability targets: number of samples
        return x.size // x.shape[_axis(x)]
    w_t = np.ones(valid.shape) if weight is None else weight[safe]
    return np.sum(w_t * valid)


def _class_weights(x, weight):
    if weight is None:
        return np.ones(x.shape[_axis(x)])
    return weight


def _broadcast_weight(x, w):
    shape = [1] * x.ndim
    shape[_axis(x)] = -1
    return w.reshape(shape)


def cross_entropy(x, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """PyTorch's cross_entropy for int class indices or float class probabilities."""
    q, valid, safe = _distribution(x, target, ignore_index, label_smoothing)
    w = _broadcast_weight(x, _class_weights(x, weight))
    loss = -np.sum(w * q * log_softmax(x, _axis(x)), axis=_axis(x))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.sum(loss)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(loss) / _mean_divisor(x, target, weight, valid, safe)


def cross_entropy_backward(grad_out, x, target, weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0):
    """Gradient of :func:`cross_entropy` w.r.t. the logits ``x``."""
    q, valid, safe = _distribution(x, target, ignore_index, label_smoothing)
    axis = _axis(x)
    wq = _broadcast_weight(x, _class_weights(x, weight)) * q
    per_sample = softmax(x, axis) * np.sum(wq, axis=axis, keepdims=True) - wq
    g = np.asarray(grad_out, dtype=np.float64)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            g = g / _mean_divisor(x, target, weight, valid, safe)
    if reduction == "none":
        g = np.expand_dims(g, axis)
    # Ignored samples have q = 0, hence per_sample = 0: their gradient is exactly 0, also
    # when the mean's divisor is 0 and g is inf (PyTorch's behaviour).
    with np.errstate(invalid="ignore"):
        return np.where(per_sample == 0, 0, g * per_sample)


def nll_loss(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """PyTorch's nll_loss: ``-w[t] * logp[t]`` per sample over log-probabilities."""
    axis = _axis(logp)
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    picked = np.squeeze(np.take_along_axis(logp, np.expand_dims(safe, axis), axis), axis)
    w_t = (np.ones(valid.shape) if weight is None else weight[safe]) * valid
    loss = -w_t * picked
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.sum(loss)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(loss) / np.sum(w_t)


def nll_loss_backward(grad_out, logp, target, weight=None, ignore_index=-100,
                      reduction="mean"):
    """Gradient of :func:`nll_loss` w.r.t. ``logp``: ``-w[t] * g`` at the target class."""
    axis = _axis(logp)
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    w_t = (np.ones(valid.shape) if weight is None else weight[safe]) * valid
    g = np.asarray(grad_out, dtype=np.float64)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            g = g / np.sum(w_t)
    coef = np.where(valid, -w_t * g, 0)
    onehot = np.moveaxis(np.eye(logp.shape[axis])[safe], -1, axis)
    return onehot * np.expand_dims(coef, axis)


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    return np.sum(loss) if reduction == "sum" else np.mean(loss)


def mse_loss(x, target, reduction="mean"):
    """``(x - target)^2``, reduced."""
    return _reduce((x - target) ** 2, reduction)


def mse_loss_backward(grad_out, x, target, reduction="mean"):
    """Gradient of :func:`mse_loss` w.r.t. x (w.r.t. target it is the negative)."""
    g = grad_out / x.size if reduction == "mean" else grad_out
    return 2 * (x - target) * g


def l1_loss(x, target, reduction="mean"):
    """``|x - target|``, reduced."""
    return _reduce(np.abs(x - target), reduction)


def l1_loss_backward(grad_out, x, target, reduction="mean"):
    """Gradient of :func:`l1_loss` w.r.t. x: ``sign(x - target)`` (0 at a tie), scaled."""
    g = grad_out / x.size if reduction == "mean" else grad_out
    return np.sign(x - target) * g
