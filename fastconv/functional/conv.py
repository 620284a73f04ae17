"""Convolution ops: conv2d, conv_transpose2d, depthwise_separable_conv2d.

Validation and normalisation happen here, once; the Functions below assume valid input and
call the compiled kernels chosen by :func:`select_conv_algorithm`.
"""
import numpy as np

from .._config import threads_for
from ..autograd import Function, is_grad_enabled
from ._args import (batched, check_ndim, check_same_dtype, data_of, is_unbatched,
                    kernel_ready, pair, positive_int)
from ._dispatch import (KERNELS, SPECIALISED, ConvParams, conv_algorithms,
                        select_conv_algorithm)

_EMPTY_BIAS = {np.dtype(np.float32): np.empty(0, np.float32),
               np.dtype(np.float64): np.empty(0, np.float64)}


def _geometry(op, x, weight, bias, stride, padding, dilation, groups, transposed):
    """Validate the operands of a (transposed) convolution; return normalised arguments."""
    check_ndim(op, "input", x, (3, 4))
    check_ndim(op, "weight", weight, (4,))
    if bias is not None:
        check_ndim(op, "bias", bias, (1,))
    dtype = check_same_dtype(op, {"input": x, "weight": weight, "bias": bias})
    xs, ws = data_of(x).shape[-3:], data_of(weight).shape
    stride = pair(op, "stride", stride, 1)
    dilation = pair(op, "dilation", dilation, 1)
    groups = positive_int(op, "groups", groups)
    c_in = xs[0]
    if transposed:
        # weight (C_in, C_out / groups, kh, kw)
        if ws[0] != c_in:
            raise ValueError(f"{op}: expected weight.shape[0] == input channels ({c_in}), "
                             f"got weight of shape {tuple(ws)}")
        c_out = ws[1] * groups
    else:
        # weight (C_out, C_in / groups, kh, kw)
        c_out = ws[0]
        if c_in % groups == 0 and ws[1] * groups != c_in:
            raise ValueError(f"{op}: expected weight.shape[1] == input channels / groups = "
                             f"{c_in} / {groups} = {c_in // groups}, got weight of shape "
                             f"{tuple(ws)}")
    if c_in % groups or c_out % groups:
        raise ValueError(f"{op}: expected in_channels and out_channels divisible by groups, "
                         f"got in_channels={c_in}, out_channels={c_out}, groups={groups}")
    if 0 in ws:
        raise ValueError(f"{op}: expected a non-empty weight, got shape {tuple(ws)}")
    if bias is not None and data_of(bias).shape[0] != c_out:
        raise ValueError(f"{op}: expected bias of shape ({c_out},), got "
                         f"{tuple(data_of(bias).shape)}")
    return dtype, stride, dilation, groups, c_out


def _conv_padding(op, padding, stride, dilation, kernel):
    """Normalise conv2d's padding, including PyTorch's "same" and "valid"."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' requires stride 1: expected stride "
                                 f"(1, 1), got stride {stride}")
            # Total padding d*(k-1); the extra pixel of an even kernel goes right/bottom, as
            # PyTorch: the kernels pad by index bounds, so padding only the left/top amount
            # and asking for an output as large as the input pads the rest implicitly.
            return tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel))
        raise ValueError(f"{op}: expected padding to be an int, a pair, 'same' or 'valid', "
                         f"got {padding!r}")
    return pair(op, "padding", padding, 0)


def _out_size(op, size, k, s, p, d, name):
    eff = d * (k - 1) + 1
    if size + 2 * p < eff:
        raise ValueError(f"{op}: kernel larger than the padded input along {name}: expected "
                         f"an effective kernel size <= the padded input size, got padded "
                         f"input size {size} + 2*{p} = {size + 2 * p}, effective kernel size "
                         f"{eff} (dilation {d} x (kernel {k} - 1) + 1)")
    return (size + 2 * p - eff) // s + 1


# What each algorithm of SPECIALISED needs, said against the parameters it was given.
_DOMAINS = {
    "depthwise": lambda p: (
        f"needs groups == in_channels (depthwise): expected groups == {p.c_in} > 1 and "
        f"out_channels a multiple of it, got in_channels={p.c_in}, groups={p.groups}, "
        f"out_channels={p.c_out}"),
    "winograd": lambda p: (
        f"(Winograd F(2x2, 3x3)): expected a 3x3 kernel, stride 1, groups 1 and dilation 1 "
        f"(or a dilation dividing the input size and the padding), got kernel {p.kh}x{p.kw}, "
        f"stride {tuple(p.stride)}, dilation {tuple(p.dilation)}, groups {p.groups}, input "
        f"{p.h}x{p.w}, padding {tuple(p.padding)}"),
}


def _pick_algorithm(op, algorithm, params, need_grad):
    if algorithm is None:
        return select_conv_algorithm(params, need_grad)
    if algorithm not in KERNELS:
        raise ValueError(f"{op}: expected algorithm to be None or one of "
                         f"{conv_algorithms()}, got {algorithm!r}")
    domain = SPECIALISED.get(algorithm)
    if domain is not None and not domain(params):
        raise ValueError(f"{op}: algorithm {algorithm!r} {_DOMAINS[algorithm](params)}")
    return algorithm


def _needs_grad(*xs):
    return is_grad_enabled() and any(getattr(x, "requires_grad", False) for x in xs)


# conv2d's checks and choices (``_geometry`` to ``_pick_algorithm``: some 15 us of Python per
# call, as much as the kernel of a small layer at batch 1) depend only on the operands'
# shapes and dtypes and the settings, and a layer calls it with the same ones every time. So
# each outcome that passed the checks is kept under that signature, for plain settings only
# (ints, pairs of ints as tuples, padding strings): other types (lists, NumPy ints, bools,
# which the checks reject) always take the full path.
_PLANS = {}
_PLANS_MAX = 512


def _plain(v):
    t = type(v)
    return t is int or (t is tuple and len(v) == 2 and type(v[0]) is int
                        and type(v[1]) is int)


def _plan_key(x, weight, bias, stride, padding, dilation, groups, algorithm, need_grad):
    """The signature of a conv2d call, or None when it takes the full path every time."""
    if not (_plain(stride) and _plain(dilation) and type(groups) is int
            and (type(padding) is str or _plain(padding))
            and (algorithm is None or type(algorithm) is str)):
        return None
    xd, wd = data_of(x), data_of(weight)
    b = None if bias is None else data_of(bias)
    return (xd.shape, xd.dtype, wd.shape, wd.dtype,
            None if b is None else (b.shape, b.dtype),
            stride, padding, dilation, groups, algorithm, need_grad)


def _conv_threads(params, conv_out_size):
    """Threads for one pass of a conv whose output (in the conv's own terms) has
    ``conv_out_size`` elements: every pass does that many times C_in / groups x kH x kW
    multiply-adds."""
    macs = conv_out_size * (params.c_in // params.groups) * params.kh * params.kw
    return threads_for(macs=macs)


class _Conv2d(Function):
    """y = conv2d(x, w) + b with kernels from ``KERNELS[algorithm]``."""

    @staticmethod
    def forward(ctx, x, weight, bias, params, out_hw, algorithm):
        kernel = KERNELS[algorithm]
        x, weight = kernel_ready(x), kernel_ready(weight)
        b = _EMPTY_BIAS[x.dtype] if bias is None else kernel_ready(bias)
        out = np.empty((x.shape[0], params.c_out) + out_hw, dtype=x.dtype)
        kernel.forward(x, weight, b, out, *params.kernel_args(), _conv_threads(params, out.size))
        ctx.save_for_backward(x, weight)
        ctx.kernel, ctx.params = kernel, params
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        kernel, params = ctx.kernel, ctx.params
        gy = kernel_ready(grad_out)
        n_threads = _conv_threads(params, gy.size)
        gx, gw = conv2d_grads(kernel, x, weight, gy, params.kernel_args(), n_threads,
                              *ctx.needs_input_grad[:2])
        gb = gy.sum(axis=(0, 2, 3)) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def conv2d_grads(kernel, x, weight, gy, geometry, n_threads, input_grad=True,
                 weight_grad=True):
    """(grad_in or None, grad_weight or None) of a conv2d from ``kernel``'s backward passes:
    both in one pass when the kernel has one (``backward``: the depthwise kernel reads
    grad_out once for both), else ``backward_input`` and ``backward_weight``. Shared with
    ``bench``, so that it times what ``Tensor.backward`` runs."""
    gx = np.empty_like(x) if input_grad else None
    gw = np.empty_like(weight) if weight_grad else None
    if input_grad and weight_grad and hasattr(kernel, "backward"):
        kernel.backward(x, gy, weight, gx, gw, *geometry, n_threads)
        return gx, gw
    if input_grad:
        kernel.backward_input(gy, weight, gx, *geometry, n_threads)
    if weight_grad:
        kernel.backward_weight(x, gy, gw, *geometry, n_threads)
    return gx, gw


class _ConvTranspose2d(Function):
    """y = conv_transpose2d(x, w) + b: the conv's backward_input run forward (Chainer's
    symmetry); its input gradient is the conv's forward, its weight gradient the conv's
    backward_weight with input and output swapped."""

    @staticmethod
    def forward(ctx, x, weight, bias, params, out_hw, algorithm):
        kernel = KERNELS[algorithm]
        x, weight = kernel_ready(x), kernel_ready(weight)
        out = np.empty((x.shape[0], params.c_in) + out_hw, dtype=x.dtype)
        kernel.backward_input(x, weight, out, *params.kernel_args(),
                              _conv_threads(params, x.size))
        if bias is not None:
            out += np.asarray(bias).reshape(1, -1, 1, 1)
        ctx.save_for_backward(x, weight)
        ctx.kernel, ctx.params = kernel, params
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        kernel, params = ctx.kernel, ctx.params
        geometry = params.kernel_args()
        gy = kernel_ready(grad_out)
        n_threads = _conv_threads(params, x.size)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = np.empty_like(x)
            kernel.forward(gy, weight, _EMPTY_BIAS[gy.dtype], gx, *geometry, n_threads)
        if ctx.needs_input_grad[1]:
            gw = np.empty_like(weight)
            kernel.backward_weight(gy, x, gw, *geometry, n_threads)
        if ctx.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gw, gb


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           algorithm=None):
    """2-D convolution (cross-correlation, as PyTorch) of an NCHW batch.

    Parameters
    ----------
    input : Tensor or ndarray, (N, C_in, H, W) or unbatched (C_in, H, W)
    weight : Tensor or ndarray, (C_out, C_in / groups, kH, kW)
    bias : Tensor or ndarray, (C_out,), optional
    stride, dilation : int or (int, int), positive
    padding : int, (int, int), "same" or "valid"
        Zero padding on both sides; "same" (stride 1 only) keeps H and W.
    groups : int
        C_in and C_out must both be divisible by it.
    algorithm : None or one of :func:`fastconv.conv_algorithms`
        None picks one (see ``select_conv_algorithm``).

    Returns
    -------
    Tensor (N, C_out, OH, OW), with
    ``OH = floor((H + 2*padding_h - dilation_h*(kH - 1) - 1) / stride_h) + 1`` (same for W).

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> x = fc.tensor(np.ones((2, 3, 8, 8)))
    >>> w = fc.tensor(np.ones((4, 3, 3, 3)), requires_grad=True)
    >>> fc.functional.conv2d(x, w, padding=1).shape
    (2, 4, 8, 8)
    """
    if is_unbatched(input):   # checked once, in the batched call
        y = conv2d(batched(input), weight, bias, stride, padding, dilation, groups,
                   algorithm)
        return y.reshape(y.shape[1:])
    need_grad = _needs_grad(input, weight, bias)
    key = _plan_key(input, weight, bias, stride, padding, dilation, groups, algorithm,
                    need_grad)
    plan = _PLANS.get(key) if key is not None else None
    if plan is None:
        plan = _conv2d_plan(input, weight, bias, stride, padding, dilation, groups,
                            algorithm, need_grad)
        if key is not None:
            if len(_PLANS) >= _PLANS_MAX:
                _PLANS.clear()
            _PLANS[key] = plan
    params, out_hw, algorithm = plan
    return _Conv2d.apply(input, weight, bias, params=params, out_hw=out_hw,
                         algorithm=algorithm)


def _conv2d_plan(input, weight, bias, stride, padding, dilation, groups, algorithm,
                 need_grad):
    """conv2d's checks and choices for a batched input: (ConvParams, (OH, OW), algorithm)."""
    op = "conv2d"
    dtype, stride, dilation, groups, c_out = _geometry(op, input, weight, bias, stride,
                                                      padding, dilation, groups, False)
    n, c_in, h, w = data_of(input).shape
    kh, kw = data_of(weight).shape[2:]
    pad = _conv_padding(op, padding, stride, dilation, (kh, kw))
    if padding == "same":
        oh, ow = h, w
    else:
        oh = _out_size(op, h, kh, stride[0], pad[0], dilation[0], "height")
        ow = _out_size(op, w, kw, stride[1], pad[1], dilation[1], "width")
    params = ConvParams(n, c_in, h, w, c_out, kh, kw, stride, pad, dilation, groups,
                        np.dtype(dtype).itemsize)
    return params, (oh, ow), _pick_algorithm(op, algorithm, params, need_grad)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, algorithm=None):
    """2-D transposed convolution (the adjoint of conv2d; "deconvolution"), as PyTorch.

    Parameters
    ----------
    input : Tensor or ndarray, (N, C_in, H, W) or unbatched (C_in, H, W)
    weight : Tensor or ndarray, (C_in, C_out / groups, kH, kW)
    bias : Tensor or ndarray, (C_out,), optional
    stride, dilation : int or (int, int), positive
    padding : int or (int, int), non-negative
        ``dilation * (kernel - 1) - padding`` zeros are implicitly added to both sides.
    output_padding : int or (int, int)
        Extra rows/columns on one side of the output; smaller than stride or dilation.
    groups : int
    algorithm : None or one of :func:`fastconv.conv_algorithms`

    Returns
    -------
    Tensor (N, C_out, OH, OW), with
    ``OH = (H - 1)*stride_h - 2*padding_h + dilation_h*(kH - 1) + output_padding_h + 1``.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> x = fc.tensor(np.ones((1, 8, 16, 16)))
    >>> w = fc.tensor(np.ones((8, 4, 4, 4)))
    >>> fc.functional.conv_transpose2d(x, w, stride=2, padding=1).shape
    (1, 4, 32, 32)
    """
    op = "conv_transpose2d"
    dtype, stride, dilation, groups, c_out = _geometry(op, input, weight, bias, stride,
                                                      padding, dilation, groups, True)
    if is_unbatched(input):
        y = conv_transpose2d(batched(input), weight, bias, stride, padding, output_padding,
                             groups, dilation, algorithm)
        return y.reshape(y.shape[1:])
    pad = pair(op, "padding", padding, 0)
    opad = pair(op, "output_padding", output_padding, 0)
    for i, name in enumerate(("height", "width")):
        if opad[i] >= stride[i] and opad[i] >= dilation[i]:
            raise ValueError(f"{op}: expected output_padding smaller than stride or dilation "
                             f"along {name}, got output_padding={opad[i]}, "
                             f"stride={stride[i]}, dilation={dilation[i]}")
    n, c_in, h, w = data_of(input).shape
    kh, kw = data_of(weight).shape[2:]
    oh = (h - 1) * stride[0] - 2 * pad[0] + dilation[0] * (kh - 1) + opad[0] + 1
    ow = (w - 1) * stride[1] - 2 * pad[1] + dilation[1] * (kw - 1) + opad[1] + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"{op}: the output would be empty: expected a positive output "
                         f"size, got ({oh}, {ow}) computed from input ({h}, {w}), kernel "
                         f"({kh}, {kw}), stride "
                         f"{stride}, padding {pad}, dilation {dilation}, output_padding "
                         f"{opad}")
    # In conv terms: the conv maps the (N, c_out, oh, ow) output back to (N, c_in, h, w).
    params = ConvParams(n, c_out, oh, ow, c_in, kh, kw, stride, pad, dilation, groups,
                        np.dtype(dtype).itemsize)
    algorithm = _pick_algorithm(op, algorithm, params, _needs_grad(input, weight, bias))
    return _ConvTranspose2d.apply(input, weight, bias, params=params, out_hw=(oh, ow),
                                  algorithm=algorithm)


def depthwise_separable_conv2d(input, depthwise_weight, pointwise_weight, bias_dw=None,
                               bias_pw=None, stride=1, padding=0, dilation=1):
    """Depthwise convolution (groups = C_in) followed by a 1x1 pointwise convolution.

    Parameters
    ----------
    input : (N, C_in, H, W)
    depthwise_weight : (C_in * multiplier, 1, kH, kW)
    pointwise_weight : (C_out, C_in * multiplier, 1, 1)
    bias_dw : (C_in * multiplier,), optional; bias_pw : (C_out,), optional
    stride, padding, dilation : of the depthwise stage, as in :func:`conv2d`

    Returns
    -------
    Tensor (N, C_out, OH, OW), OH as in :func:`conv2d` for the depthwise stage.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> x = np.ones((1, 4, 8, 8), np.float32)
    >>> dw, pw = np.ones((4, 1, 3, 3), np.float32), np.ones((6, 4, 1, 1), np.float32)
    >>> fc.functional.depthwise_separable_conv2d(x, dw, pw, padding=1).shape
    (1, 6, 8, 8)
    """
    op = "depthwise_separable_conv2d"
    check_ndim(op, "input", input, (3, 4))
    check_ndim(op, "depthwise_weight", depthwise_weight, (4,))
    check_ndim(op, "pointwise_weight", pointwise_weight, (4,))
    check_same_dtype(op, {"input": input, "depthwise_weight": depthwise_weight,
                          "pointwise_weight": pointwise_weight, "bias_dw": bias_dw,
                          "bias_pw": bias_pw})
    c_in = data_of(input).shape[-3]
    if c_in == 0:
        raise ValueError(f"{op}: expected input with at least one channel, got shape "
                         f"{tuple(data_of(input).shape)}")
    dws, pws = data_of(depthwise_weight).shape, data_of(pointwise_weight).shape
    if dws[1] != 1 or dws[0] % c_in:
        raise ValueError(f"{op}: expected depthwise_weight of shape (C_in * multiplier, 1, kH, "
                         f"kW) with C_in = {c_in}, got {tuple(dws)}")
    if pws[1:] != (dws[0], 1, 1):
        raise ValueError(f"{op}: expected pointwise_weight of shape (C_out, {dws[0]}, 1, 1), "
                         f"got {tuple(pws)}")
    for name, b, c in (("bias_dw", bias_dw, dws[0]), ("bias_pw", bias_pw, pws[0])):
        if b is not None and data_of(b).shape != (c,):
            raise ValueError(f"{op}: expected {name} of shape ({c},), got "
                             f"{tuple(data_of(b).shape)}")
    mid = conv2d(input, depthwise_weight, bias_dw, stride, padding, dilation, groups=c_in)
    return conv2d(mid, pointwise_weight, bias_pw)
