"""Plain NumPy reference for 2-D convolution and transposed convolution.

This module is the oracle the tests compare the compiled kernels against and the
baseline ``bench/`` measures them against, so it is written for clarity first and
imports nothing but NumPy. It is still vectorised (no Python loop over pixels):

* gathers (the conv forward, both weight gradients and the transposed conv's input
  gradient) build the im2col matrix from a ``sliding_window_view`` and do one matrix
  product per group (``matmul`` batched over groups);
* scatters (the conv's input gradient and the transposed conv's forward) loop over
  the kernel taps ``(kh, kw)`` and add one strided slice per tap.

Layout is PyTorch's: NCHW activations, conv weights ``(C_out, C_in/groups, kH, kW)``,
transposed-conv weights ``(C_in, C_out/groups, kH, kW)``. ``stride``, ``padding``,
``dilation`` and ``output_padding`` are an int or an ``(h, w)`` pair. Results have
the dtype NumPy's promotion gives the array operands (the input dtype when they agree);
pass float64 arrays for the tightest oracle. Arguments are assumed sensible, but shape
mismatches raise ``ValueError`` instead of returning garbage.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "conv2d",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "conv2d_backward_bias",
    "conv_transpose2d",
    "conv_transpose2d_backward_input",
    "conv_transpose2d_backward_weight",
    "conv_transpose2d_backward_bias",
]


# ----------------------------------------------------------------------------- helpers

def _pair(value, name):
    """``v`` -> ``(v, v)``; an ``(h, w)`` pair is returned as a tuple of ints."""
    if np.ndim(value) == 0:
        return int(value), int(value)
    if len(value) != 2:
        raise ValueError(f"expected {name} to be an int or an (h, w) pair, got {value!r}")
    return int(value[0]), int(value[1])


def _shape4(shape, name):
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        raise ValueError(f"expected {name} to be 4-D, got shape {shape}")
    return shape


def _conv_out_size(size, k, s, p, d, axis):
    """floor((size + 2p - d(k-1) - 1) / s) + 1, checked to be positive."""
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    if out <= 0:
        raise ValueError(
            f"expected a positive output {axis}, got {out}: padded input {size + 2 * p} is "
            f"smaller than the effective kernel size {d * (k - 1) + 1}")
    return out


def _transpose_out_size(size, k, s, p, op, d, axis):
    """(size-1)s - 2p + d(k-1) + op + 1, checked to be positive."""
    if not 0 <= op < max(s, d):
        raise ValueError(f"expected output_padding {axis} in [0, max(stride, dilation)) = "
                         f"[0, {max(s, d)}), got {op}")
    out = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
    if out <= 0:
        raise ValueError(f"expected a positive output {axis}, got {out}")
    return out


def _check_groups(c_in, c_out, c_in_per_group, groups, what):
    if groups < 1 or c_in % groups or c_out % groups:
        raise ValueError(f"expected groups ({groups}) to divide C_in ({c_in}) and "
                         f"C_out ({c_out}) of the {what}")
    if c_in_per_group * groups != c_in:
        raise ValueError(f"expected {c_in // groups} input channels per group in the "
                         f"{what} weight, got {c_in_per_group}")


def _check_grad_out(grad_out, expected):
    if grad_out.shape != expected:
        raise ValueError(f"expected grad_out of shape {expected}, got {grad_out.shape}")


def _pad_hw(x, ph, pw):
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _im2col(xp, kernel_size, stride, dilation, out_size, groups):
    """Gather the windows of an already padded ``xp`` (N, C, Hp, Wp) into a matrix.

    Returns ``cols`` of shape (groups, C/groups*kH*kW, N*OH*OW) with
    ``cols[g, (c, i, j), (n, oh, ow)] = xp[n, g*C/groups + c, oh*sh + i*dh, ow*sw + j*dw]``
    over the first ``out_size`` window positions along each axis. Pixels are the last
    axis so that the copy reads ``xp`` rows in order (several times faster than putting the
    (c, i, j) axis last).
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel_size, stride, dilation, out_size
    n, c = xp.shape[:2]
    windows = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :oh, :ow]   # (N, C, OH, OW, kH, kW)
    windows = windows.reshape(n, groups, c // groups, oh, ow, kh, kw)
    return windows.transpose(1, 2, 5, 6, 0, 3, 4).reshape(groups, c // groups * kh * kw,
                                                          n * oh * ow)


def _channels_first(a, groups):
    """(N, C, H, W) -> (groups, C/groups, N*H*W), the layout of every per-group GEMM here."""
    n, c, h, w = a.shape
    return a.reshape(n, groups, c // groups, h * w).transpose(1, 2, 0, 3).reshape(
        groups, c // groups, n * h * w)


def _to_nchw(a, n, h, w):
    """Inverse of :func:`_channels_first`: (groups, C/groups, N*H*W) -> contiguous NCHW."""
    groups, cg = a.shape[:2]
    a = a.reshape(groups, cg, n, h, w).transpose(2, 0, 1, 3, 4)
    return np.ascontiguousarray(a.reshape(n, groups * cg, h, w))


def _add_bias(y, bias):
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (y.shape[1],):
            raise ValueError(f"expected bias of shape ({y.shape[1]},), got {bias.shape}")
        y += bias.reshape(1, -1, 1, 1)   # in place: keeps the dtype of y
    return y


# ----------------------------------------------------------------------------- conv2d

def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d``.

    ``y[n, g*Cog + o, oh, ow] = bias[g*Cog + o] + sum_{c, i, j}
    x_pad[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw] * weight[g*Cog + o, c, i, j]``
    with ``Cg = C_in/groups``, ``Cog = C_out/groups`` and ``x_pad`` zero-padded by
    ``padding`` on each side.

    Parameters
    ----------
    x : ndarray, (N, C_in, H, W)
    weight : ndarray, (C_out, C_in/groups, kH, kW)
    bias : ndarray (C_out,) or None
    stride, padding, dilation : int or (h, w) pair
    groups : int, divides C_in and C_out

    Returns
    -------
    y : ndarray, (N, C_out, OH, OW)
        ``OH = floor((H + 2*pad_h - dil_h*(kH-1) - 1) / stride_h) + 1``, same for OW.

    Examples
    --------
    >>> y = conv2d(np.ones((1, 1, 4, 4)), np.ones((2, 1, 3, 3)), padding=1)
    >>> y.shape, y[0, 0, :2, :2].tolist()
    ((1, 2, 4, 4), [[4.0, 6.0], [6.0, 9.0]])
    """
    x, weight = np.asarray(x), np.asarray(weight)
    n, c_in, h, w = _shape4(x.shape, "x")
    c_out, cg, kh, kw = _shape4(weight.shape, "weight")
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    _check_groups(c_in, c_out, cg, groups, "conv2d")
    oh = _conv_out_size(h, kh, sh, ph, dh, "height")
    ow = _conv_out_size(w, kw, sw, pw, dw, "width")

    cols = _im2col(_pad_hw(x, ph, pw), (kh, kw), (sh, sw), (dh, dw), (oh, ow), groups)
    wmat = weight.reshape(groups, c_out // groups, cg * kh * kw)
    y = _to_nchw(wmat @ cols, n, oh, ow)
    return _add_bias(y, bias)


def conv2d_backward_input(grad_out, weight, input_shape, stride=1, padding=0, dilation=1,
                          groups=1):
    """Gradient of :func:`conv2d` with respect to ``x``.

    Every output pixel scatters ``grad_out * weight`` back onto the input window it
    read; the part that lands in the padding is dropped. Input rows and columns that
    no window reaches (when ``(H + 2p - d(kH-1) - 1) % s != 0``) get 0.

    Parameters
    ----------
    grad_out : ndarray, (N, C_out, OH, OW)
        OH, OW as in :func:`conv2d` for ``input_shape``.
    weight : ndarray, (C_out, C_in/groups, kH, kW)
    input_shape : tuple (N, C_in, H, W)
    stride, padding, dilation, groups : as in :func:`conv2d`

    Returns
    -------
    grad_x : ndarray, ``input_shape``
    """
    grad_out, weight = np.asarray(grad_out), np.asarray(weight)
    n, c_in, h, w = _shape4(input_shape, "input_shape")
    c_out, cg, kh, kw = _shape4(weight.shape, "weight")
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    _check_groups(c_in, c_out, cg, groups, "conv2d")
    oh = _conv_out_size(h, kh, sh, ph, dh, "height")
    ow = _conv_out_size(w, kw, sw, pw, dw, "width")
    _check_grad_out(grad_out, (n, c_out, oh, ow))

    cog = c_out // groups
    gy = _channels_first(grad_out, groups)                       # (G, Cog, N*OH*OW)
    dtype = np.result_type(grad_out, weight)
    gx_pad = np.zeros((groups, cg, n, h + 2 * ph, w + 2 * pw), dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            w_tap = weight[:, :, i, j].reshape(groups, cog, cg)
            contrib = (w_tap.transpose(0, 2, 1) @ gy).reshape(groups, cg, n, oh, ow)
            gx_pad[:, :, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                   j * dw:j * dw + sw * (ow - 1) + 1:sw] += contrib
    gx = gx_pad[:, :, :, ph:ph + h, pw:pw + w].reshape(c_in, n, h, w).transpose(1, 0, 2, 3)
    return np.ascontiguousarray(gx)


def conv2d_backward_weight(x, grad_out, weight_shape, stride=1, padding=0, dilation=1,
                           groups=1):
    """Gradient of :func:`conv2d` with respect to ``weight``.

    ``gw[g*Cog + o, c, i, j] = sum_{n, oh, ow} grad_out[n, g*Cog + o, oh, ow] *
    x_pad[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]``.

    Parameters
    ----------
    x : ndarray, (N, C_in, H, W)
    grad_out : ndarray, (N, C_out, OH, OW), OH and OW as in :func:`conv2d`
    weight_shape : tuple (C_out, C_in/groups, kH, kW)
    stride, padding, dilation, groups : as in :func:`conv2d`

    Returns
    -------
    grad_weight : ndarray, ``weight_shape``
    """
    x, grad_out = np.asarray(x), np.asarray(grad_out)
    n, c_in, h, w = _shape4(x.shape, "x")
    c_out, cg, kh, kw = _shape4(weight_shape, "weight_shape")
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    _check_groups(c_in, c_out, cg, groups, "conv2d")
    oh = _conv_out_size(h, kh, sh, ph, dh, "height")
    ow = _conv_out_size(w, kw, sw, pw, dw, "width")
    _check_grad_out(grad_out, (n, c_out, oh, ow))

    cols = _im2col(_pad_hw(x, ph, pw), (kh, kw), (sh, sw), (dh, dw), (oh, ow), groups)
    # gw = gy @ cols^T, evaluated as (cols @ gy^T)^T: OpenBLAS is about twice as fast
    # when the long N*OH*OW axis is the inner dimension of a row-major left operand.
    gw_t = cols @ _channels_first(grad_out, groups).transpose(0, 2, 1)   # (G, Cg*kH*kW, Cog)
    return np.ascontiguousarray(gw_t.transpose(0, 2, 1)).reshape(c_out, cg, kh, kw)


def conv2d_backward_bias(grad_out):
    """Gradient of :func:`conv2d` (or :func:`conv_transpose2d`) with respect to ``bias``.

    Parameters
    ----------
    grad_out : ndarray, (N, C_out, OH, OW)

    Returns
    -------
    grad_bias : ndarray, (C_out,), ``grad_out`` summed over N, OH and OW.
    """
    grad_out = np.asarray(grad_out)
    _shape4(grad_out.shape, "grad_out")
    return grad_out.sum(axis=(0, 2, 3))


conv_transpose2d_backward_bias = conv2d_backward_bias


# ----------------------------------------------------------------------------- conv_transpose2d

def _transpose_geometry(input_shape, weight_shape, stride, padding, output_padding, groups,
                        dilation):
    """Validate a transposed conv; return C_out and the (h, w) pairs of its geometry."""
    n, c_in, h, w = _shape4(input_shape, "input")
    c_in_w, cog, kh, kw = _shape4(weight_shape, "weight")
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding")
    (oph, opw), (dh, dw) = _pair(output_padding, "output_padding"), _pair(dilation, "dilation")
    if groups < 1 or c_in % groups:
        raise ValueError(f"expected groups ({groups}) to divide C_in ({c_in}) of the "
                         f"conv_transpose2d")
    if c_in_w != c_in:
        raise ValueError(f"expected a conv_transpose2d weight of shape ({c_in}, C_out/groups, "
                         f"kH, kW), got {(c_in_w, cog, kh, kw)}")
    oh = _transpose_out_size(h, kh, sh, ph, oph, dh, "height")
    ow = _transpose_out_size(w, kw, sw, pw, opw, dw, "width")
    return cog * groups, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    Each input pixel scatters ``x[n, g*Cig + c, ih, iw] * weight[g*Cig + c, o, i, j]``
    onto ``y_full[n, g*Cog + o, ih*sh + i*dh, iw*sw + j*dw]``; ``y_full`` has
    ``output_padding`` extra rows/columns at the bottom/right, and ``y`` is ``y_full``
    with ``padding`` cropped from each side, plus the bias.

    Parameters
    ----------
    x : ndarray, (N, C_in, H, W)
    weight : ndarray, (C_in, C_out/groups, kH, kW)
    bias : ndarray (C_out,) or None
    stride, padding, output_padding, dilation : int or (h, w) pair;
        ``output_padding < max(stride, dilation)`` as in PyTorch
    groups : int, divides C_in and C_out

    Returns
    -------
    y : ndarray, (N, C_out, OH, OW)
        ``OH = (H-1)*stride_h - 2*pad_h + dil_h*(kH-1) + output_padding_h + 1``,
        same for OW.

    Examples
    --------
    >>> conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), stride=2).shape
    (1, 1, 4, 4)
    """
    x, weight = np.asarray(x), np.asarray(weight)
    n, c_in, h, w = _shape4(x.shape, "x")
    c_out, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = _transpose_geometry(
        x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    cig, cog = c_in // groups, c_out // groups

    xg = _channels_first(x, groups)                               # (G, Cig, N*H*W)
    y_full = np.zeros((groups, cog, n, oh + 2 * ph, ow + 2 * pw),
                      dtype=np.result_type(x, weight))
    for i in range(kh):
        for j in range(kw):
            w_tap = weight[:, :, i, j].reshape(groups, cig, cog)
            contrib = (w_tap.transpose(0, 2, 1) @ xg).reshape(groups, cog, n, h, w)
            y_full[:, :, :, i * dh:i * dh + sh * (h - 1) + 1:sh,
                   j * dw:j * dw + sw * (w - 1) + 1:sw] += contrib
    y = y_full[:, :, :, ph:ph + oh, pw:pw + ow].reshape(c_out, n, oh, ow)
    return _add_bias(np.ascontiguousarray(y.transpose(1, 0, 2, 3)), bias)


def conv_transpose2d_backward_input(grad_out, weight, input_shape, stride=1, padding=0,
                                    output_padding=0, groups=1, dilation=1):
    """Gradient of :func:`conv_transpose2d` with respect to ``x``.

    Each input pixel gathers what it scattered:
    ``gx[n, g*Cig + c, ih, iw] = sum_{o, i, j} gy_full[n, g*Cog + o, ih*sh + i*dh,
    iw*sw + j*dw] * weight[g*Cig + c, o, i, j]``, where ``gy_full`` is ``grad_out``
    zero-padded by ``padding`` on each side (the cropped border of the forward).

    Parameters
    ----------
    grad_out : ndarray, (N, C_out, OH, OW), OH and OW as in :func:`conv_transpose2d`
    weight : ndarray, (C_in, C_out/groups, kH, kW)
    input_shape : tuple (N, C_in, H, W)
    stride, padding, output_padding, groups, dilation : as in :func:`conv_transpose2d`

    Returns
    -------
    grad_x : ndarray, ``input_shape``
    """
    grad_out, weight = np.asarray(grad_out), np.asarray(weight)
    n, c_in, h, w = _shape4(input_shape, "input_shape")
    c_out, kernel_size, stride, (ph, pw), dilation, (oh, ow) = _transpose_geometry(
        input_shape, weight.shape, stride, padding, output_padding, groups, dilation)
    _check_grad_out(grad_out, (n, c_out, oh, ow))

    # The forward cropped `padding` from each side of y_full: put grad_out back in place
    # (the cropped border has zero gradient) and gather each input pixel's windows.
    cols = _im2col(_pad_hw(grad_out, ph, pw), kernel_size, stride, dilation, (h, w), groups)
    wmat = weight.reshape(groups, c_in // groups, weight[0].size)   # (G, Cig, Cog*kH*kW)
    return _to_nchw(wmat @ cols, n, h, w)


def conv_transpose2d_backward_weight(x, grad_out, weight_shape, stride=1, padding=0,
                                     output_padding=0, groups=1, dilation=1):
    """Gradient of :func:`conv_transpose2d` with respect to ``weight``.

    ``gw[g*Cig + c, o, i, j] = sum_{n, ih, iw} x[n, g*Cig + c, ih, iw] *
    gy_full[n, g*Cog + o, ih*sh + i*dh, iw*sw + j*dw]``, ``gy_full`` as in
    :func:`conv_transpose2d_backward_input`.

    Parameters
    ----------
    x : ndarray, (N, C_in, H, W)
    grad_out : ndarray, (N, C_out, OH, OW), OH and OW as in :func:`conv_transpose2d`
    weight_shape : tuple (C_in, C_out/groups, kH, kW)
    stride, padding, output_padding, groups, dilation : as in :func:`conv_transpose2d`

    Returns
    -------
    grad_weight : ndarray, ``weight_shape``
    """
    x, grad_out = np.asarray(x), np.asarray(grad_out)
    n, c_in, h, w = _shape4(x.shape, "x")
    weight_shape = _shape4(weight_shape, "weight_shape")
    c_out, kernel_size, stride, (ph, pw), dilation, (oh, ow) = _transpose_geometry(
        x.shape, weight_shape, stride, padding, output_padding, groups, dilation)
    _check_grad_out(grad_out, (n, c_out, oh, ow))

    cols = _im2col(_pad_hw(grad_out, ph, pw), kernel_size, stride, dilation, (h, w), groups)
    # gw = x @ cols^T, evaluated as (cols @ x^T)^T for speed, as in conv2d_backward_weight.
    gw_t = cols @ _channels_first(x, groups).transpose(0, 2, 1)          # (G, Cog*kH*kW, Cig)
    return np.ascontiguousarray(gw_t.transpose(0, 2, 1)).reshape(weight_shape)
