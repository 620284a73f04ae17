"""The fuzzing table: for every kernel op, how to draw a random call and how to check it.

Shared by the quick hypothesis test (``tests/reliability/test_fuzz.py``) and the long
subprocess runner (``bench/fuzz.py``). A case is drawn through a small ``draw`` interface
(``int(lo, hi)``, ``choice(options)``, ``rare()``), so hypothesis can drive and shrink it and a
seeded NumPy generator can replay it; the case itself is a JSON-able dict (shapes, parameters,
dtypes, layout, thread count and the seed its arrays are made from), so a crash is reported
with everything needed to reproduce it.

:func:`check` runs one case: fastconv forward and backward (gradients of every float input
for a random ``grad_out``) against ``fastconv.reference`` on float64 copies of the same values.
The outcome is ``"ok"``, or ``"rejected"`` when fastconv raised a ``TypeError``,
``ValueError`` or ``IndexError`` that says what was expected and the case was indeed invalid
(a non-float dtype, mixed dtypes, or the reference rejects it too). Anything else raises
:class:`FuzzFailure`: a mismatch, an unclear or unexpected exception, a valid call rejected
or an invalid one accepted.

One file, longer than the usual ~500 lines, on purpose: it is a declarative table (draw, make,
fastconv call, reference, known-invalid predicate per op, grouped by stage), and the tests
load it by path, where a package of modules would need import gymnastics.
"""
import warnings

import numpy as np

import fastconv as fc
import fastconv.functional as F
import fastconv.reference as R

FLOATS = ("float32", "float64")
BAD_DTYPES = ("int32", "bool", "complex64", "float16")
LAYOUTS = ("contiguous", "fortran", "strided", "negative", "readonly")
TOL = {"float32": 1e-4, "float64": 1e-10}


class FuzzFailure(AssertionError):
    """fastconv disagreed with the reference, or failed in a way a user must never see."""


class RngDraw:
    """The ``draw`` interface over a NumPy generator (the long runner)."""

    def __init__(self, rng):
        self.rng = rng

    def int(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, options):
        return options[self.int(0, len(options) - 1)]

    def rare(self):
        """True about once in 16 draws: inject an invalid argument."""
        return self.int(0, 15) == 15


def case_for(seed, index):
    """The case number ``index`` of run ``seed`` (what the long runner replays)."""
    d = RngDraw(np.random.default_rng([seed, index]))
    return draw_case(d, d.choice(sorted(OPS)))


def draw_case(d, op):
    case = {"op": op, "threads": d.int(1, 3), "seed": d.int(0, 2 ** 31 - 1),
            "layout": d.choice(LAYOUTS)}
    dtype = d.choice(FLOATS)
    case["dtype"] = d.choice(BAD_DTYPES) if d.rare() else dtype
    # a second dtype for the other float operands: mixing is a TypeError for kernel ops
    case["dtype2"] = d.choice(FLOATS) if d.rare() else dtype
    OPS[op][0](d, case)
    return case


# ----------------------------------------------------------------------------- draws

def _bad(d, good, bad):
    return bad if d.rare() else good


def _conv_like(d, c, transposed):
    alg = c["op"].split(":")[1]
    c["algorithm"] = None if alg == "auto" else alg
    depthwise = alg == "depthwise" and not d.rare()
    c["groups"] = g = d.int(1, 3)
    c_in, c_out = g * d.int(1, 3), g * d.int(1, 3)
    if depthwise:          # groups == conv input channels, C_out a multiple of it
        c_in = c["groups"] = g = d.int(2, 4)
        c_out = g * d.int(1, 2)
        if transposed:     # in conv terms the transposed conv's output is the input
            c_in, c_out = c_out, c_in
    c["n"] = d.int(0, 3)
    c["c_in"], c["c_out"] = c_in, c_out
    c["h"], c["w"] = d.int(1, 10), d.int(1, 10)
    c["k"] = [d.int(1, 4), d.int(1, 4)]
    c["stride"] = [_bad(d, d.int(1, 3), 0), d.int(1, 3)]
    c["padding"] = [_bad(d, d.int(0, 2), -1), d.int(0, 2)]
    c["dilation"] = [_bad(d, d.int(1, 2), 0), d.int(1, 2)]
    c["bias"] = d.int(0, 1) == 1
    if alg == "winograd" and not d.rare():   # its domain: 3x3, stride 1, groups 1
        c["groups"], c["k"], c["stride"] = 1, [3, 3], [1, 1]
        c["c_in"], c["c_out"] = d.int(1, 4), d.int(1, 4)
        c["dilation"] = [1, 1] if d.int(0, 2) else [2, 2]
    # an inconsistent weight: one channel too many along its per-group axis
    c["weight_extra"] = 1 if d.rare() else 0
    c["unbatched"] = d.rare()
    if transposed:   # output_padding < max(stride, dilation), else an error
        c["output_padding"] = [
            _bad(d, d.int(0, max(1, c["stride"][i], c["dilation"][i]) - 1), 3)
            for i in range(2)]
    elif d.rare():
        c["padding"] = d.choice(["same", "valid"])


def _draw_conv(d, c):
    _conv_like(d, c, False)


def _draw_conv_t(d, c):
    _conv_like(d, c, True)


def _draw_pool_input(d, c, nmax=2, cmax=3, hw=9):
    c["shape"] = [d.int(0, nmax), d.int(1, cmax), d.int(1, hw), d.int(1, hw)]
    c["values"] = d.choice(["normal", "ties"])


def _draw_max_pool(d, c):
    _draw_pool_input(d, c)
    c["k"] = [d.int(1, 4), d.int(1, 4)]
    c["stride"] = d.choice([None, [d.int(1, 3), _bad(d, d.int(1, 3), 0)]])
    c["padding"] = [d.int(0, c["k"][0] // 2), _bad(d, d.int(0, c["k"][1] // 2), c["k"][1])]
    c["dilation"] = [d.int(1, 2), _bad(d, d.int(1, 2), 0)]
    c["ceil_mode"] = d.int(0, 1) == 1


def _draw_avg_pool(d, c):
    _draw_pool_input(d, c)
    c["k"] = [d.int(1, 4), d.int(1, 4)]
    c["stride"] = d.choice([None, [d.int(1, 3), d.int(1, 3)]])
    c["padding"] = [d.int(0, c["k"][0] // 2), _bad(d, d.int(0, c["k"][1] // 2), -1)]
    c["ceil_mode"] = d.int(0, 1) == 1
    c["count_include_pad"] = d.int(0, 1) == 1
    c["divisor_override"] = d.choice([None, None, d.int(1, 5), _bad(d, 2, 0)])


def _draw_adaptive(d, c):
    _draw_pool_input(d, c, hw=12)
    c["output_size"] = [d.choice([None, d.int(1, 7)]), _bad(d, d.int(1, 7), 0)]


def _draw_lp_pool(d, c):
    _draw_pool_input(d, c)
    c["norm_type"] = d.choice([1, 2, 3, 1.5, "inf", _bad(d, 2, 0)])
    c["k"] = [d.int(1, 3), d.int(1, 3)]
    c["stride"] = d.choice([None, [d.int(1, 3), d.int(1, 3)]])
    c["ceil_mode"] = d.int(0, 1) == 1
    c["values"] = d.choice(["positive", "normal"])


def _draw_batch_norm(d, c):
    nd = d.int(2, 4)
    c["shape"] = [d.int(1, 4), d.int(1, 4)] + [d.int(1, 5) for _ in range(nd - 2)]
    c["training"] = d.int(0, 1) == 1
    c["affine"] = d.int(0, 1) == 1
    c["stats"] = d.int(0, 1) == 1 or not c["training"]
    c["stat_shape_extra"] = 1 if d.rare() else 0
    c["momentum"] = d.choice([0.1, 0.5, 1.0])
    c["eps"] = d.choice([1e-5, 1e-3, 0.5])


def _draw_elementwise(d, c):
    c["shape"] = [d.int(0, 3) if i == 0 else d.int(1, 5) for i in range(d.int(0, 4))]
    c["values"] = d.choice(["normal", "wide"])
    name = c["op"]
    if name == "leaky_relu":
        c["slope"] = d.choice([0.01, 0.2, -0.5, 0.0])
    elif name == "elu":
        c["alpha"] = d.choice([1.0, 0.5, 2.0])
    elif name in ("softmax", "log_softmax"):
        nd = max(len(c["shape"]), 1)
        c["dim"] = d.int(-nd, nd - 1) if not d.rare() else nd
    elif name == "prelu":
        if not c["shape"]:
            c["shape"] = [d.int(1, 4)]
        ch = c["shape"][1] if len(c["shape"]) > 1 else c["shape"][0]
        c["num_weights"] = _bad(d, d.choice([1, max(ch, 1)]), ch + 1)


def _draw_linear(d, c):
    c["lead"] = [d.int(0, 3) for _ in range(d.int(0, 2))]
    c["in_f"], c["out_f"] = d.int(1, 9), d.int(1, 9)
    c["in_extra"] = 1 if d.rare() else 0
    c["bias"] = d.int(0, 1) == 1


def _draw_interpolate(d, c):
    _draw_pool_input(d, c, hw=6)
    c["mode"] = d.choice(["nearest", "bilinear"])
    c["align_corners"] = d.choice([None, True, False]) if c["mode"] == "bilinear" else None
    if d.int(0, 1):
        c["size"] = [_bad(d, d.int(1, 13), 0), d.int(1, 13)]
        c["scale_factor"] = None
    else:
        c["size"] = None
        c["scale_factor"] = [d.choice([0.5, 1.0, 1.5, 2.0, 3.0]),
                             _bad(d, d.choice([0.75, 1.0, 2.0, 2.5]), -1.0)]


def _draw_pixel_shuffle(d, c):
    r = d.int(1, 3)
    c["r"] = _bad(d, r, 0)
    lead = [d.int(0, 2) for _ in range(d.int(0, 2))]
    if c["op"] == "pixel_shuffle":
        c["shape"] = lead + [d.int(1, 3) * r * r + (1 if d.rare() else 0), d.int(1, 4),
                             d.int(1, 4)]
    else:
        c["shape"] = lead + [d.int(1, 3), d.int(1, 4) * r, d.int(1, 4) * r + (d.rare())]


def _draw_cross_entropy(d, c):
    nd = d.int(1, 3)
    c["shape"] = ([d.int(1, 5)] if nd == 1 else [d.int(0, 4), d.int(1, 5)]
                  + [d.int(1, 3) for _ in range(nd - 2)])
    c["target"] = d.choice(["index", "index", "prob"])
    c["out_of_range"] = d.rare()
    c["ignore"] = d.int(0, 3) == 0
    c["weight"] = d.int(0, 1) == 1
    c["reduction"] = d.choice(["mean", "sum", "none"])
    c["label_smoothing"] = d.choice([0.0, 0.0, 0.1, 0.5])


def _draw_mse(d, c):
    c["shape"] = [d.int(0, 3) for _ in range(d.int(0, 3))]
    c["target_extra"] = 1 if d.rare() and c["shape"] else 0
    c["reduction"] = d.choice(["mean", "sum", "none"])


# ----------------------------------------------------------------------------- arrays

def _values(rng, shape, kind):
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(np.float64)
    if kind == "positive":
        return np.abs(rng.standard_normal(shape)) + 0.25
    if kind == "wide":
        return rng.standard_normal(shape) * 30
    return rng.standard_normal(shape)


def _layout(a, kind):
    """The same values in another memory layout (see LAYOUTS)."""
    if a.ndim == 0 or kind == "contiguous":
        return a
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "strided":
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        view = big[(slice(None, None, 2),) * a.ndim]
        view[...] = a
        return view
    if kind == "negative":
        return np.flip(np.ascontiguousarray(np.flip(a)))
    b = a.copy()
    b.flags.writeable = False
    return b


def _as(a, dtype, layout="contiguous"):
    if dtype == "complex64":
        out = a.astype(np.complex64)
    else:
        out = a.astype(dtype)
    return _layout(out, layout)


# ----------------------------------------------------------------------------- running

def _run_fast(fn, inputs, diff, gy_rng):
    """fastconv forward, then backward of a random grad_out; {"y": ..., "g<name>": ...}."""
    tensors = {k: (fc.Tensor(v, requires_grad=True) if k in diff else v)
               for k, v in inputs.items()}
    out = fn(**tensors)
    extra = {}
    if isinstance(out, tuple):
        out, extra = out
    result = dict(extra, y=out.data)
    if diff and out.requires_grad:
        gy = np.asarray(_values(gy_rng, out.shape, "normal")).astype(out.dtype)
        result["gy"] = gy
        out.backward(gy)
        for k in diff:
            result["g" + k] = tensors[k].grad
    return result


def _close(name, got, want, dtype, exact=False):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise FuzzFailure(f"{name}: shape {got.shape}, reference {want.shape}")
    if exact or got.dtype.kind in "iub":
        if not np.array_equal(got, want):
            raise FuzzFailure(f"{name}: differs from the reference at "
                              f"{np.argwhere(got != want)[:3].tolist()}")
        return
    gn, wn = np.isnan(got), np.isnan(want)
    if not np.array_equal(gn, wn):
        raise FuzzFailure(f"{name}: NaN at {np.argwhere(gn != wn)[:3].tolist()} in one only")
    g, w = got[~gn].astype(np.float64), want[~wn].astype(np.float64)
    if not np.array_equal(np.isinf(g), np.isinf(w)) or not np.array_equal(
            g[np.isinf(g)], w[np.isinf(w)]):
        raise FuzzFailure(f"{name}: infinities differ from the reference")
    fin = np.isfinite(w)
    if fin.any():
        err = float(np.max(np.abs(g[fin] - w[fin])))
        scale = max(1.0, float(np.max(np.abs(w[fin]))))
        if err > TOL[dtype] * scale:
            raise FuzzFailure(f"{name}: max abs error {err:.3g} > {TOL[dtype]:.0e} x "
                              f"{scale:.3g}")


def _uses_im2col(c):
    return c["algorithm"] in (None, "im2col")


# Kernel bugs this fuzzer found that are reported and not fixed yet: (what, predicate). The
# long run still reports them (labelled); the quick test leaves them to the strict-xfail
# regression tests in tests/reliability/test_kernel_regressions.py. Delete an entry when its
# regression test starts to pass.
KNOWN_BUGS = []


def known_bug(case):
    """The description of the known kernel bug ``case`` runs into, or None."""
    for what, applies in KNOWN_BUGS:
        try:
            if applies(case):
                return what
        except KeyError:
            pass
    return None


def check(case):
    """Run one case; return "ok" or "rejected", or raise FuzzFailure."""
    try:
        return _check(case)
    except FuzzFailure as exc:
        bug = known_bug(case)
        if bug is not None:
            raise FuzzFailure(f"[known kernel bug: {bug}] {exc}") from exc
        raise


def _check(case):
    draw, make, fast, ref, known_invalid = OPS[case["op"]]
    rng = np.random.default_rng(case["seed"])
    inputs, diff = make(case, rng)
    dt, dt2 = case["dtype"], case["dtype2"]
    mixed = dt2 != dt and any(role == "w" for _, role in inputs.values())
    bad_dtype = dt not in FLOATS or (mixed and case["op"] in MIXING_IS_ERROR)
    fast_in = {}
    for k, (a, role) in inputs.items():
        if role == "x":
            fast_in[k] = _as(a, dt, case["layout"])
        elif role == "w":
            fast_in[k] = _as(a, dt2 if dt in FLOATS else dt)
        else:
            fast_in[k] = a
    # the oracle gets float64 copies of the values fastconv is given (before batch_norm
    # updates its running statistics in place)
    ref_in = {k: (a.astype(np.float64) if a.dtype.kind == "f" else a.copy())
              for k, a in fast_in.items()}
    previous = fc.get_num_threads()
    fc.set_num_threads(case["threads"])
    try:
        got = _run_fast(lambda **kw: fast(case, **kw), fast_in,
                        () if bad_dtype else diff, np.random.default_rng(case["seed"] + 1))
        error = None
    except (TypeError, ValueError, IndexError) as exc:
        got, error = None, exc
    except MemoryError:
        raise
    except Exception as exc:
        raise FuzzFailure(f"unexpected {type(exc).__name__}: {exc}") from exc
    finally:
        fc.set_num_threads(previous)
    if error is not None:
        msg = str(error)
        if "expected" not in msg.lower():
            raise FuzzFailure(f"unclear {type(error).__name__} (no 'expected ...'): {msg}")
        if bad_dtype:
            if not isinstance(error, TypeError):
                raise FuzzFailure(f"bad dtype gave {type(error).__name__}, not TypeError: "
                                  f"{msg}")
            return "rejected"
    elif bad_dtype:
        raise FuzzFailure(f"accepted dtypes {dt}/{dt2}")
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)    # mean of an empty array
            want = ref(case, ref_in, None if got is None else got.get("gy"))
        ref_error = None
    except (ValueError, IndexError, ZeroDivisionError) as exc:
        want, ref_error = None, exc
    invalid = known_invalid(case)
    if error is not None:
        if ref_error is None and not invalid:
            raise FuzzFailure(f"rejected a call the reference accepts: "
                              f"{type(error).__name__}: {error}")
        return "rejected"
    if ref_error is not None or invalid:
        raise FuzzFailure(f"accepted a call the reference rejects "
                          f"({ref_error!r} / known invalid: {invalid})")
    out_dtype = "float32" if "float32" in ((dt, dt2) if mixed else (dt,)) else dt
    for key, value in want.items():
        if key not in got:
            raise FuzzFailure(f"no {key} computed")
        _close(key, got[key], value, out_dtype, exact=(key == "indices"))
    return "ok"


# ----------------------------------------------------------------------------- ops

def _g(got_gy):
    return None if got_gy is None else got_gy.astype(np.float64)


def _conv_weight_shape(c, transposed):
    g, k = c["groups"], c["k"]
    if transposed:
        return (c["c_in"] + c["weight_extra"], c["c_out"] // g, *k)
    return (c["c_out"], c["c_in"] // g + c["weight_extra"], *k)


def _make_conv(c, rng, transposed=False):
    shape = (c["c_in"], c["h"], c["w"])
    x = _values(rng, shape if c["unbatched"] else (c["n"],) + shape, "normal")
    inputs = {"x": (x, "x"), "w": (_values(rng, _conv_weight_shape(c, transposed), "normal"),
                                   "w")}
    if c["bias"]:
        inputs["b"] = (_values(rng, (c["c_out"],), "normal"), "w")
    return inputs, tuple(inputs)


def _fast_conv(c, x, w, b=None):
    return F.conv2d(x, w, b, tuple(c["stride"]), c["padding"] if isinstance(c["padding"], str)
                    else tuple(c["padding"]), tuple(c["dilation"]), c["groups"],
                    algorithm=c["algorithm"])


def _batch4(x):
    return x[None] if x.ndim == 3 else x


def _ref_conv(c, inp, gy):
    x, w, b = _batch4(inp["x"]), inp["w"], inp.get("b")
    s, dil, g = c["stride"], c["dilation"], c["groups"]
    pad, crop = c["padding"], None
    if pad == "valid":
        pad = [0, 0]
    elif pad == "same":
        if s != [1, 1]:
            raise ValueError("same needs stride 1")
        total = [dl * (k - 1) for dl, k in zip(dil, c["k"])]
        pad = [(t + 1) // 2 for t in total]
        crop = [p - t // 2 for p, t in zip(pad, total)]
    y = R.conv2d(x, w, b, s, pad, dil, g)
    if crop is not None:
        y = y[:, :, crop[0]:crop[0] + x.shape[2], crop[1]:crop[1] + x.shape[3]]
    out = {"y": y[0] if inp["x"].ndim == 3 else y}
    if gy is not None:
        gy = _batch4(_g(gy))
        if crop is not None:
            full = np.zeros((x.shape[0], w.shape[0], x.shape[2] + 2 * pad[0] - total[0],
                             x.shape[3] + 2 * pad[1] - total[1]))
            full[:, :, crop[0]:crop[0] + x.shape[2], crop[1]:crop[1] + x.shape[3]] = gy
            gy = full
        gx = R.conv2d_backward_input(gy, w, x.shape, s, pad, dil, g)
        out["gx"] = gx[0] if inp["x"].ndim == 3 else gx
        out["gw"] = R.conv2d_backward_weight(x, gy, w.shape, s, pad, dil, g)
        if b is not None:
            out["gb"] = R.conv2d_backward_bias(gy)
    return out


def _winograd_invalid(c, transposed=False):
    """Outside Winograd's domain: not 3x3 / stride 1 / groups 1, or a dilation that does not
    divide the (conv-terms) input size and the padding."""
    if c["algorithm"] != "winograd":
        return False
    if not (c["k"] == [3, 3] and c["stride"] == [1, 1] and c["groups"] == 1):
        return True
    d = c["dilation"]
    if d == [1, 1]:
        return False
    pad = c["padding"]
    if isinstance(pad, str):
        pad = [di if pad == "same" else 0 for di in d]
    size = [c["h"], c["w"]]
    if transposed:    # in conv terms the input is the transposed conv's output
        size = [(size[i] - 1) - 2 * pad[i] + 2 * d[i] + c["output_padding"][i] + 1
                for i in range(2)]
    return min(d) < 1 or any(size[i] % d[i] or pad[i] % d[i] for i in range(2))


def _conv_invalid(c):
    # the reference has no algorithm argument and pads where PyTorch requires... nothing more
    if c["algorithm"] == "depthwise":
        return not (c["groups"] == c["c_in"] and c["groups"] > 1 and c["weight_extra"] == 0
                    and c["c_out"] % c["c_in"] == 0)
    return _winograd_invalid(c)


def _fast_conv_t(c, x, w, b=None):
    return F.conv_transpose2d(x, w, b, tuple(c["stride"]), tuple(c["padding"]),
                              tuple(c["output_padding"]), c["groups"], tuple(c["dilation"]),
                              algorithm=c["algorithm"])


def _ref_conv_t(c, inp, gy):
    x, w, b = _batch4(inp["x"]), inp["w"], inp.get("b")
    args = (c["stride"], c["padding"], c["output_padding"], c["groups"], c["dilation"])
    if min(c["stride"] + c["dilation"] + [c["groups"]]) < 1 or min(c["padding"]) < 0:
        raise ValueError("bad geometry")
    y = R.conv_transpose2d(x, w, b, *args)
    out = {"y": y[0] if inp["x"].ndim == 3 else y}
    if gy is not None:
        gy = _batch4(_g(gy))
        gx = R.conv_transpose2d_backward_input(gy, w, x.shape, *args)
        out["gx"] = gx[0] if inp["x"].ndim == 3 else gx
        out["gw"] = R.conv_transpose2d_backward_weight(x, gy, w.shape, *args)
        if b is not None:
            out["gb"] = R.conv_transpose2d_backward_bias(gy)
    return out


def _conv_t_invalid(c):
    if c["algorithm"] == "depthwise":   # in conv terms: groups == C_out of the transposed conv
        return not (c["groups"] == c["c_out"] and c["groups"] > 1 and c["weight_extra"] == 0
                    and c["c_in"] % c["c_out"] == 0)
    return _winograd_invalid(c, transposed=True)


def _make_x(c, rng):
    return {"x": (_values(rng, c["shape"], c.get("values", "normal")), "x")}, ("x",)


def _stride(c):
    return None if c["stride"] is None else tuple(c["stride"])


def _fast_max_pool(c, x):
    y, idx = F.max_pool2d(x, tuple(c["k"]), _stride(c), tuple(c["padding"]),
                          tuple(c["dilation"]), c["ceil_mode"], return_indices=True)
    return y, {"indices": idx}


def _empty_batch_safe(ref):
    """The reference on one zero image, sliced to none, for an empty batch: its max pooling
    reshapes with -1, which N = 0 makes ambiguous (an oracle limitation, not fastconv's)."""
    def run(c, inp, gy):
        x = inp["x"]
        if x.shape[0] or x.ndim != 4:
            return ref(c, inp, gy)
        one = dict(inp, x=np.zeros((1,) + x.shape[1:]))
        out = ref(c, one, None if gy is None else np.zeros((1,) + gy.shape[1:]))
        return {k: v[:0] for k, v in out.items()}
    return run


@_empty_batch_safe
def _ref_max_pool(c, inp, gy):
    x = inp["x"]
    if min(c["dilation"] + (c["stride"] or [1])) < 1:
        raise ValueError("bad geometry")
    y, idx = R.pool.max_pool2d(x, c["k"], c["stride"], c["padding"], c["dilation"],
                               c["ceil_mode"])
    out = {"y": y, "indices": idx}
    if gy is not None:
        out["gx"] = R.pool.max_pool2d_backward(_g(gy), idx, x.shape)
    return out


def _pad_over_half(c):
    return any(p > k // 2 for p, k in zip(c["padding"], c["k"]))


def _avg_args(c):
    return (tuple(c["k"]), _stride(c), tuple(c["padding"]), c["ceil_mode"],
            c["count_include_pad"], c["divisor_override"])


def _fast_avg_pool(c, x):
    return F.avg_pool2d(x, *_avg_args(c))


def _ref_avg_pool(c, inp, gy):
    x = inp["x"]
    if min(c["padding"]) < 0 or c["divisor_override"] == 0:
        raise ValueError("bad geometry")
    out = {"y": R.pool.avg_pool2d(x, *_avg_args(c))}
    if gy is not None:
        out["gx"] = R.pool.avg_pool2d_backward(_g(gy), x.shape, *_avg_args(c))
    return out


def _adaptive_size(c):
    return tuple(c["shape"][2 + i] if v is None else v for i, v in enumerate(c["output_size"]))


def _fast_adaptive(c, x):
    if c["op"] == "adaptive_avg_pool2d":
        return F.adaptive_avg_pool2d(x, tuple(c["output_size"]))
    y, idx = F.adaptive_max_pool2d(x, tuple(c["output_size"]), return_indices=True)
    return y, {"indices": idx}


@_empty_batch_safe
def _ref_adaptive(c, inp, gy):
    x, size = inp["x"], _adaptive_size(c)
    if min(size) < 1:
        raise ValueError("bad output size")
    if c["op"] == "adaptive_avg_pool2d":
        out = {"y": R.pool.adaptive_avg_pool2d(x, size)}
        if gy is not None:
            out["gx"] = R.pool.adaptive_avg_pool2d_backward(_g(gy), x.shape)
        return out
    y, idx = R.pool.adaptive_max_pool2d(x, size)
    out = {"y": y, "indices": idx}
    if gy is not None:
        out["gx"] = R.pool.adaptive_max_pool2d_backward(_g(gy), idx, x.shape)
    return out


def _norm_type(c):
    return float("inf") if c["norm_type"] == "inf" else c["norm_type"]


def _fast_lp_pool(c, x):
    return F.lp_pool2d(x, _norm_type(c), tuple(c["k"]), _stride(c), c["ceil_mode"])


@_empty_batch_safe
def _ref_lp_pool(c, inp, gy):
    x, p = inp["x"], _norm_type(c)
    if p <= 0:
        raise ValueError("bad norm_type")
    args = (p, c["k"], c["stride"], c["ceil_mode"])
    out = {"y": R.pool.lp_pool2d(x, *args)}
    if gy is not None:
        out["gx"] = R.pool.lp_pool2d_backward(_g(gy), x, *args)
    return out


def _make_bn(c, rng):
    ch = c["shape"][1] + c["stat_shape_extra"]
    inputs = {"x": (_values(rng, c["shape"], "normal") * 3 + 1, "x")}
    if c["affine"]:
        inputs["w"] = (_values(rng, (ch,), "normal"), "w")
        inputs["b"] = (_values(rng, (ch,), "normal"), "w")
    if c["stats"]:
        inputs["rm"] = (_values(rng, (ch,), "normal"), "w")
        inputs["rv"] = (np.abs(_values(rng, (ch,), "normal")) + 0.5, "w")
    return inputs, tuple(k for k in ("x", "w", "b") if k in inputs)


def _fast_bn(c, x, w=None, b=None, rm=None, rv=None):
    # running stats are updated in place (in training): return them as extra outputs
    y = F.batch_norm(x, rm, rv, w, b, c["training"], c["momentum"], c["eps"])
    return y, ({} if rm is None or not c["training"] else {"rm": rm, "rv": rv})


def _ref_bn(c, inp, gy):
    x, w, b, rm, rv = (inp.get(k) for k in ("x", "w", "b", "rm", "rv"))
    ch = x.shape[1]
    for a in (w, b, rm, rv):
        if a is not None and a.shape != (ch,):
            raise ValueError("bad stats shape")
    if c["training"]:
        if x.size // ch == 1:
            raise ValueError("one value per channel")
        y, _, _ = R.batchnorm.batch_norm_train(x, w, b, c["eps"])
        out = {"y": y}
        if rm is not None:
            rm, rv = rm.copy(), rv.copy()
            R.batchnorm.update_running_stats(x, rm, rv, c["momentum"])
            out["rm"], out["rv"] = rm, rv
        if gy is not None:
            out["gx"], gw, gb = R.batchnorm.batch_norm_backward(_g(gy), x, w, c["eps"])
            if w is not None:
                out["gw"], out["gb"] = gw, gb
        return out
    out = {"y": R.batchnorm.batch_norm_eval(x, rm, rv, w, b, c["eps"])}
    if gy is not None:
        out["gx"], gw, gb = R.batchnorm.batch_norm_eval_backward(_g(gy), x, rm, rv, w, c["eps"])
        if w is not None:
            out["gw"], out["gb"] = gw, gb
    return out


def _make_elementwise(c, rng):
    inputs = {"x": (_values(rng, c["shape"], c["values"]), "x")}
    if c["op"] == "prelu":
        inputs["w"] = (np.abs(_values(rng, (c["num_weights"],), "normal")) * 0.3, "w")
    return inputs, tuple(inputs)


def _fast_elementwise(c, x, w=None):
    op = c["op"]
    if op == "leaky_relu":
        return F.leaky_relu(x, c["slope"])
    if op == "elu":
        return F.elu(x, c["alpha"])
    if op == "prelu":
        return F.prelu(x, w)
    if op in ("softmax", "log_softmax"):
        return getattr(F, op)(x, c["dim"])
    return getattr(F, op)(x)


def _ref_elementwise(c, inp, gy):
    x, op, A = inp["x"], c["op"], R.activations
    g = _g(gy)
    if op == "relu":
        out = {"y": A.relu(x)}
        if g is not None:
            out["gx"] = A.relu_backward(g, x)
    elif op == "leaky_relu":
        out = {"y": A.leaky_relu(x, c["slope"])}
        if g is not None:
            out["gx"] = A.leaky_relu_backward(g, x, c["slope"])
    elif op == "elu":
        out = {"y": A.elu(x, c["alpha"])}
        if g is not None:
            out["gx"] = A.elu_backward(g, x, c["alpha"])
    elif op == "prelu":
        w = inp["w"]
        ch = x.shape[1] if x.ndim > 1 else x.shape[0]
        if w.shape[0] not in (1, ch):
            raise ValueError("bad weight")
        xx = x.reshape(1, -1) if x.ndim == 1 else x   # a 1-D input is one sample
        out = {"y": A.prelu(xx, w).reshape(x.shape)}
        if g is not None:
            gx, gw = A.prelu_backward(g.reshape(xx.shape), xx, w)
            out["gx"], out["gw"] = gx.reshape(x.shape), gw
    elif op in ("sigmoid", "tanh"):
        y = getattr(A, op)(x)
        out = {"y": y}
        if g is not None:
            out["gx"] = getattr(A, op + "_backward")(g, y)
    else:
        nd = max(x.ndim, 1)
        if not -nd <= c["dim"] < nd:
            raise IndexError("dim")
        xx = x.reshape(1) if x.ndim == 0 else x
        y = getattr(A, op)(xx, c["dim"]) if xx.size else xx.copy()
        out = {"y": y.reshape(x.shape)}
        if g is not None:
            out["gx"] = getattr(A, op + "_backward")(g.reshape(xx.shape), y,
                                                      c["dim"]).reshape(x.shape)
    return out


def _make_linear(c, rng):
    inputs = {"x": (_values(rng, c["lead"] + [c["in_f"] + c["in_extra"]], "normal"), "x"),
              "w": (_values(rng, (c["out_f"], c["in_f"]), "normal"), "w")}
    if c["bias"]:
        inputs["b"] = (_values(rng, (c["out_f"],), "normal"), "w")
    return inputs, tuple(inputs)


def _fast_linear(c, x, w, b=None):
    return F.linear(x, w, b)


def _ref_linear(c, inp, gy):
    x, w, b = inp["x"], inp["w"], inp.get("b")
    if x.shape[-1] != w.shape[1]:
        raise ValueError("in_features")
    out = {"y": R.linear.linear(x, w, b)}
    if gy is not None:
        g = _g(gy)
        out["gx"] = R.linear.linear_backward_input(g, w)
        out["gw"] = R.linear.linear_backward_weight(g, x)
        if b is not None:
            out["gb"] = R.linear.linear_backward_bias(g)
    return out


def _fast_interpolate(c, x):
    size = None if c["size"] is None else tuple(c["size"])
    sf = None if c["scale_factor"] is None else tuple(c["scale_factor"])
    return F.interpolate(x, size, sf, c["mode"], c["align_corners"])


def _ref_interpolate(c, inp, gy):
    x = inp["x"]
    if c["size"] is not None:
        size, sf = tuple(c["size"]), None
    else:
        sf = tuple(c["scale_factor"])
        if min(sf) <= 0:
            raise ValueError("scale")
        size = tuple(int(np.floor(n * s)) for n, s in zip(x.shape[2:], sf))
    if min(size) < 1:
        raise ValueError("size")
    U = R.upsample
    if c["mode"] == "nearest":
        out = {"y": U.upsample_nearest2d(x, size, sf)}
        if gy is not None:
            out["gx"] = U.upsample_nearest2d_backward(_g(gy), x.shape, sf)
    else:
        ac = bool(c["align_corners"])
        out = {"y": U.upsample_bilinear2d(x, size, ac, sf)}
        if gy is not None:
            out["gx"] = U.upsample_bilinear2d_backward(_g(gy), x.shape, ac, sf)
    return out


def _fast_pixel(c, x):
    return getattr(F, c["op"])(x, c["r"])


def _ref_pixel(c, inp, gy):
    x, r = inp["x"], c["r"]
    if r < 1:
        raise ValueError("r")
    if c["op"] == "pixel_shuffle":
        if x.shape[-3] % (r * r):
            raise ValueError("channels")
        fwd, bwd = R.upsample.pixel_shuffle, R.upsample.pixel_unshuffle
    else:
        if x.shape[-2] % r or x.shape[-1] % r:
            raise ValueError("size")
        fwd, bwd = R.upsample.pixel_unshuffle, R.upsample.pixel_shuffle
    out = {"y": fwd(x, r)}
    if gy is not None:
        out["gx"] = bwd(_g(gy), r)
    return out


def _make_ce(c, rng):
    shape = c["shape"]
    axis = 1 if len(shape) > 1 else 0
    classes = shape[axis]
    inputs = {"x": (_values(rng, shape, "normal") * 2, "x")}
    tshape = shape[:axis] + shape[axis + 1:]
    if c["target"] == "index":
        t = rng.integers(0, classes, tshape).astype(np.int64)
        if c["ignore"] and t.size:
            t.flat[0] = -100
        if c["out_of_range"] and t.size:
            t.flat[-1] = classes
        inputs["t"] = (t, "int")
    else:
        q = rng.random(shape) + 0.01
        inputs["t"] = (q / q.sum(axis=axis, keepdims=True), "w")
    if c["weight"]:
        inputs["w"] = (rng.random(classes) + 0.5, "w")
    return inputs, ("x",)


def _fast_ce(c, x, t, w=None):
    return F.cross_entropy(x, t, w, reduction=c["reduction"],
                           label_smoothing=c["label_smoothing"])


def _ref_ce(c, inp, gy):
    x, t, w = inp["x"], inp["t"], inp.get("w")
    axis = 1 if x.ndim > 1 else 0
    if t.dtype.kind == "i" and np.any((t != -100) & ((t < 0) | (t >= x.shape[axis]))):
        raise IndexError("target")
    args = (w, -100, c["reduction"], c["label_smoothing"])
    out = {"y": R.loss.cross_entropy(x, t, *args)}
    if gy is not None:
        out["gx"] = R.loss.cross_entropy_backward(_g(gy), x, t, *args)
    return out


def _make_mse(c, rng):
    shape = c["shape"]
    tshape = shape[:-1] + [shape[-1] + c["target_extra"]] if shape else shape
    return {"x": (_values(rng, shape, "normal"), "x"),
            "t": (_values(rng, tshape, "normal"), "w")}, ("x", "t")


def _fast_mse(c, x, t):
    return F.mse_loss(x, t, c["reduction"])


def _ref_mse(c, inp, gy):
    x, t = inp["x"], inp["t"]
    if x.shape != t.shape:
        raise ValueError("shape")
    out = {"y": R.loss.mse_loss(x, t, c["reduction"])}
    if gy is not None:
        gx = R.loss.mse_loss_backward(_g(gy), x, t, c["reduction"])
        out["gx"], out["gt"] = gx, -gx
    return out


def _never(c):
    return False


def _ops():
    table = {}
    for alg in ("auto",) + tuple(fc.conv_algorithms()):
        table[f"conv2d:{alg}"] = (_draw_conv, _make_conv, _fast_conv, _ref_conv,
                                  _conv_invalid)
        table[f"conv_transpose2d:{alg}"] = (
            _draw_conv_t, lambda c, rng: _make_conv(c, rng, True), _fast_conv_t, _ref_conv_t,
            _conv_t_invalid)
    table["max_pool2d"] = (_draw_max_pool, _make_x, _fast_max_pool, _ref_max_pool,
                           _pad_over_half)
    table["avg_pool2d"] = (_draw_avg_pool, _make_x, _fast_avg_pool, _ref_avg_pool,
                           _pad_over_half)
    for name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        table[name] = (_draw_adaptive, _make_x, _fast_adaptive, _ref_adaptive, _never)
    table["lp_pool2d"] = (_draw_lp_pool, _make_x, _fast_lp_pool, _ref_lp_pool, _never)
    table["batch_norm"] = (_draw_batch_norm, _make_bn, _fast_bn, _ref_bn, _never)
    for name in ("relu", "leaky_relu", "elu", "prelu", "sigmoid", "tanh", "softmax",
                 "log_softmax"):
        table[name] = (_draw_elementwise, _make_elementwise, _fast_elementwise,
                       _ref_elementwise, _never)
    table["linear"] = (_draw_linear, _make_linear, _fast_linear, _ref_linear, _never)
    table["interpolate"] = (_draw_interpolate, _make_x, _fast_interpolate, _ref_interpolate,
                            _never)
    for name in ("pixel_shuffle", "pixel_unshuffle"):
        table[name] = (_draw_pixel_shuffle, _make_x, _fast_pixel, _ref_pixel, _never)
    table["cross_entropy"] = (_draw_cross_entropy, _make_ce, _fast_ce, _ref_ce, _never)
    table["mse_loss"] = (_draw_mse, _make_mse, _fast_mse, _ref_mse, _never)
    return table


OPS = _ops()
# ops whose operands must share one dtype (PyTorch's rule for kernel ops); elementwise loss
# arithmetic promotes as NumPy does
MIXING_IS_ERROR = {k for k in OPS if k.split(":")[0] in (
    "conv2d", "conv_transpose2d", "batch_norm", "prelu", "linear", "cross_entropy")}
