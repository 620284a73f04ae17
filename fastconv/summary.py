"""``summary(model, input_shape)``: per-layer output shape, parameters, multiply-accumulates
and receptive field, printed as a table and returned as data.

How it works: forward hooks are put on every module and one forward pass is run on zeros
(in eval mode, restored afterwards, so BatchNorm statistics and the dropout RNG are
untouched). A *leaf* is a module whose call ran no other module: layers such as ``Conv2d``
and ``ReLU``, but also a custom module that only calls ``fastconv.functional`` ops. Only
leaves get a row; containers and blocks (``Sequential``, ``BasicBlock``) do not.

What is counted
---------------
params
    Elements of the leaf's parameters (with those of its children, e.g.
    ``DepthwiseSeparableConv2d``). The totals count every parameter of the model once,
    even when a layer is called twice.
MACs
    Multiply-accumulates with weights, for the whole batch: conv
    ``N * C_out * OH * OW * C_in/groups * kH * kW``; transposed conv
    ``N * C_in * H * W * C_out/groups * kH * kW``; depthwise-separable conv the sum of its
    depthwise and pointwise parts; linear ``rows * in * out``; BatchNorm one per output
    element (its per-channel ``x * scale + shift``, foldable into the preceding conv).
    Bias additions, pooling, activations, dropout and residual additions count 0: they are
    not multiply-accumulates (they are memory bound and cheap next to the convolutions).
receptive field (rf) and jump
    Per axis, the size of the input region that one output element of the layer can see,
    and the input-pixel distance between adjacent output elements, from the standard
    recurrence ``rf_out = rf_in + dilation * (k - 1) * jump_in``, ``jump_out = jump_in *
    stride`` (padding ignored, so rf may exceed the image). Global operations (adaptive
    pooling to 1x1, SPP, Flatten of a feature map) cover their whole input; a transposed
    conv divides the jump by its stride; elementwise layers, BatchNorm and Linear keep it.
    Branches: the forward pass is recorded on the autograd tape, and a layer's input is
    traced back through the tape (residual additions, reshapes, concatenations) to the
    leaf outputs it depends on; where several meet, the largest rf and jump are taken.
    (When called under ``no_grad`` nothing is recorded and the previous leaf's output is
    assumed to be the input, which is exact for sequential models only.)
"""
import math

import numpy as np

from .nn.layers import (SPP, AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, BatchNorm2d,
                        Conv2d, ConvTranspose2d, DepthwiseSeparableConv2d, Flatten, Linear,
                        LPPool2d, MaxPool2d, PixelShuffle, PixelUnshuffle, Upsample)
from .tensor import Tensor

__all__ = ["summary", "ModelSummary"]


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _first_tensor(x):
    if isinstance(x, (tuple, list)):
        return next((_first_tensor(e) for e in x if _first_tensor(e) is not None), None)
    return x if isinstance(x, Tensor) else None


# ------------------------------------------------------------------------ counting
def _macs(module, x, y):
    if y is None:
        return 0
    if isinstance(module, Conv2d):
        c_in, kh, kw = module.weight.shape[1:]
        return int(y.data.size * c_in * kh * kw)
    if isinstance(module, ConvTranspose2d):
        c_out_g, kh, kw = module.weight.shape[1:]
        return int(x.data.size * c_out_g * kh * kw)
    if isinstance(module, DepthwiseSeparableConv2d):
        mid, _, kh, kw = module.depthwise.weight.shape
        plane = y.data.size // (y.shape[0] * y.shape[1]) * y.shape[0]
        return int(plane * mid * kh * kw + y.data.size * mid)
    if isinstance(module, Linear):
        return int(y.data.size * module.in_features)
    if isinstance(module, BatchNorm2d):
        return int(y.data.size)
    return 0


# --------------------------------------------------------------- receptive field
def _window(info, k, s, d):
    rf, jump = info
    rf = tuple(r + dd * (kk - 1) * j for r, kk, dd, j in zip(rf, k, d, jump))
    return rf, tuple(j * ss for j, ss in zip(jump, s))


def _global(info, hw):
    return _window(info, hw, hw, (1, 1))


def _adaptive_window(n, o):
    """Largest window and mean step of adaptive pooling from n to o along one axis."""
    k = max(-(-(i + 1) * n // o) - (i * n) // o for i in range(o))
    return k, n / o


def _rf_after(module, info, x, y):
    """(rf, jump) at ``module``'s output given (rf, jump) at its input."""
    in_hw = tuple(x.shape[-2:]) if x is not None and x.ndim >= 3 else None
    out_hw = tuple(y.shape[-2:]) if y is not None and y.ndim >= 3 else None
    if isinstance(module, Conv2d):
        return _window(info, module.kernel_size, module.stride, module.dilation)
    if isinstance(module, DepthwiseSeparableConv2d):
        return _window(info, module.kernel_size, module.stride, module.dilation)
    if isinstance(module, ConvTranspose2d):
        rf, jump = info
        span = [math.ceil((d * (k - 1) + 1) / s) for k, s, d in
                zip(module.kernel_size, module.stride, module.dilation)]
        rf = tuple(r + (n - 1) * j for r, n, j in zip(rf, span, jump))
        return rf, tuple(j / s for j, s in zip(jump, module.stride))
    if isinstance(module, MaxPool2d):
        return _window(info, _pair(module.kernel_size), _pair(module.stride),
                       _pair(module.dilation))
    if isinstance(module, (AvgPool2d, LPPool2d)):
        k = _pair(module.kernel_size)
        s = k if module.stride is None else _pair(module.stride)
        return _window(info, k, s, (1, 1))
    if isinstance(module, (AdaptiveAvgPool2d, AdaptiveMaxPool2d)) and in_hw and out_hw:
        ks = [_adaptive_window(n, o) for n, o in zip(in_hw, out_hw)]
        rf, jump = info
        rf = tuple(r + (k - 1) * j for r, (k, _), j in zip(rf, ks, jump))
        return rf, tuple(j * s for j, (_, s) in zip(jump, ks))
    if isinstance(module, SPP) and in_hw:
        return _global(info, in_hw)
    if isinstance(module, Flatten) and x is not None and x.ndim == 4 \
            and module.start_dim in (0, 1, -3, -4) and in_hw:
        return _global(info, in_hw)
    if isinstance(module, Upsample) and in_hw and out_hw:
        rf, jump = info
        if module.mode == "bilinear":
            rf = tuple(r + j for r, j in zip(rf, jump))
        return rf, tuple(j * i / o for j, i, o in zip(jump, in_hw, out_hw))
    if isinstance(module, PixelShuffle):
        return info[0], tuple(j / module.upscale_factor for j in info[1])
    if isinstance(module, PixelUnshuffle):
        f = module.downscale_factor
        return _window(info, (f, f), (f, f), (1, 1))
    return info


def _merge(a, b):
    if a is None:
        return b
    return (tuple(max(p, q) for p, q in zip(a[0], b[0])),
            tuple(max(p, q) for p, q in zip(a[1], b[1])))


class _Tracker:
    """Receptive-field info of tensors, found through the autograd tape."""

    def __init__(self, input_tensor):
        self.known = {id(input_tensor): (input_tensor, ((1, 1), (1, 1)))}
        self.last = ((1, 1), (1, 1))

    def set(self, tensor, info):
        if tensor is not None:
            self.known[id(tensor)] = (tensor, info)  # keeps it alive: ids stay unique
        self.last = info

    def get(self, tensor):
        if tensor is None:
            return self.last
        best, stack, seen = None, [tensor], set()
        while stack:
            t = stack.pop()
            hit = self.known.get(id(t))
            if hit is not None and hit[0] is t:
                best = _merge(best, hit[1])
                continue
            node = t.grad_fn
            if node is None or node.inputs is None or id(node) in seen:
                continue
            seen.add(id(node))
            stack.extend(i for i in node.inputs if i is not None)
        return self.last if best is None else best


# ------------------------------------------------------------------------- output
def _fmt_pair(p):
    def one(v):
        return f"{int(v)}" if float(v).is_integer() else f"{v:.3g}"
    return one(p[0]) if p[0] == p[1] else f"{one(p[0])}x{one(p[1])}"


class ModelSummary:
    """What :func:`summary` returns.

    Attributes
    ----------
    layers : list of dict
        One per leaf call, in execution order: ``name``, ``type``, ``output_shape``,
        ``params``, ``trainable_params``, ``macs``, ``rf`` ((h, w)), ``jump`` ((h, w)).
    totals : dict
        ``params``, ``trainable_params``, ``non_trainable_params``, ``macs``,
        ``input_shape``, ``output_shape``, ``param_bytes``, ``rf``, ``jump``.

    ``layers, totals = summary(...)`` unpacks; ``str()`` gives the table.
    """

    def __init__(self, layers, totals):
        self.layers, self.totals = layers, totals

    def __iter__(self):
        return iter((self.layers, self.totals))

    def table(self):
        head = ("Layer", "Type", "Output shape", "Params", "MACs", "RF", "Jump")
        body = [(r["name"], r["type"], str(list(r["output_shape"])), f"{r['params']:,}",
                 f"{r['macs']:,}", _fmt_pair(r["rf"]), _fmt_pair(r["jump"]))
                for r in self.layers]
        widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
        right = {3, 4, 5, 6}

        def line(row):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths))).rstrip()

        rule = "-" * len(line(head))
        t = self.totals
        lines = [rule, line(head), rule] + [line(r) for r in body] + [rule]
        lines += [f"Input shape: {list(t['input_shape'])}   "
                  f"Output shape: {list(t['output_shape'])}",
                  f"Total params: {t['params']:,}",
                  f"Trainable params: {t['trainable_params']:,}",
                  f"Non-trainable params: {t['non_trainable_params']:,}",
                  f"Total MACs: {t['macs']:,}",
                  f"Params size: {t['param_bytes'] / 2 ** 20:.2f} MiB",
                  rule]
        return "\n".join(lines)

    __str__ = table

    def __repr__(self):
        return self.table()


def summary(model, input_shape, dtype=None, print_fn=print):
    """Run ``model`` once on zeros and report every leaf layer.

    Parameters
    ----------
    model : fastconv.nn.Module
    input_shape : tuple of int
        ``(C, H, W)`` (a batch of 1 is added), or a full 4-D ``(N, C, H, W)``; any other
        length gets a leading batch dim of 1 too.
    dtype : float32 or float64, optional
        Of the zeros; default the dtype of the model's parameters (float32 without any).
    print_fn : callable or None
        Called with each line of the table; None prints nothing.

    Returns
    -------
    ModelSummary
        ``.layers`` (list of dicts) and ``.totals`` (dict); see the module docstring for
        what is counted and how receptive fields follow branches.

    Examples
    --------
    >>> import fastconv as fc
    >>> s = fc.summary(fc.models.lenet5(), (1, 28, 28), print_fn=None)
    >>> s.totals["params"], s.totals["macs"]
    (61706, 416520)
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4:
        shape = (1,) + shape
    params = list(model.parameters())
    if dtype is None:
        floats = [p.dtype for p in params if p.dtype.kind == "f"]
        dtype = floats[0] if floats else np.float32
    x = Tensor(np.zeros(shape, dtype=dtype), requires_grad=True)
    names = {}
    for name, module in model.named_modules():
        names.setdefault(id(module), name or type(module).__name__)
    modes = [(m, m.training) for m in model.modules()]
    tracker = _Tracker(x)
    rows, stack, handles = [], [], []

    def pre_hook(module, inputs):
        if stack:
            stack[-1][1] = True
        stack.append([module, False])

    def post_hook(module, inputs, output):
        _, called_child = stack.pop()
        if called_child:
            return
        xin, y = _first_tensor(inputs), _first_tensor(output)
        info = _rf_after(module, tracker.get(xin), xin, y)
        tracker.set(y, info)
        own = list(module.parameters())
        rows.append({
            "name": names.get(id(module), type(module).__name__),
            "type": type(module).__name__,
            "output_shape": tuple(y.shape) if y is not None else (),
            "params": int(sum(p.data.size for p in own)),
            "trainable_params": int(sum(p.data.size for p in own if p.requires_grad)),
            "macs": _macs(module, xin, y),
            "rf": info[0],
            "jump": info[1],
        })

    try:
        model.eval()
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))
        out = _first_tensor(model(x))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    n_params = int(sum(p.data.size for p in params))
    n_train = int(sum(p.data.size for p in params if p.requires_grad))
    final = tracker.get(out) if out is not None else tracker.last
    totals = {
        "params": n_params,
        "trainable_params": n_train,
        "non_trainable_params": n_params - n_train,
        "macs": int(sum(r["macs"] for r in rows)),
        "input_shape": shape,
        "output_shape": tuple(out.shape) if out is not None else (),
        "param_bytes": int(sum(p.data.nbytes for p in params)),
        "rf": final[0],
        "jump": final[1],
    }
    result = ModelSummary(rows, totals)
    if print_fn is not None:
        for line in result.table().split("\n"):
            print_fn(line)
    return result
