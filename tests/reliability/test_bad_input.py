"""Bad arguments to every public function of ``fastconv.functional`` raise TypeError or
ValueError (IndexError for an out-of-range dim or class index, as Python and PyTorch do),
with a message that names the argument, what was expected and what was got.

Three families are generated from one table of good calls (``SPECS``): every float operand
with a non-float dtype (int, bool, complex, float16), every operand of a kernel op in the
other float dtype (mixing float32 and float64 is a TypeError, as in PyTorch), and every
operand with a fixed number of dims given another number. Argument-specific mistakes (zero or
negative stride and dilation, negative padding, kernel larger than the padded input,
mismatched channels and groups, bad output sizes, bad loss targets, ...) are listed one by one
in ``CASES``. Modules and state dicts are in ``test_bad_module_input.py``.
"""
from dataclasses import dataclass, field

import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F

f32 = np.float32
X = np.ones((2, 4, 8, 8), f32)
BAD_DTYPES = (np.int32, np.int64, np.uint8, np.bool_, np.complex64, np.float16)


@dataclass
class Spec:
    """A good call ``fn(**arrays, **kwargs)``; ``floats``: operands that must be float32 or
    float64; ``same_dtype``: whether they must share one dtype (kernel ops); ``ndims``:
    operand -> the numbers of dims it may have."""
    fn: object
    arrays: dict
    kwargs: dict = field(default_factory=dict)
    floats: tuple = None
    same_dtype: bool = False
    ndims: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.floats is None:
            self.floats = tuple(self.arrays)

    def call(self, **changes):
        args = dict(self.arrays, **self.kwargs)
        args.update(changes)
        return self.fn(**args)


def _a(*shape):
    return np.ones(shape, f32)


ANY = set(range(0, 7))
SPECS = {
    "conv2d": Spec(F.conv2d, dict(input=X, weight=_a(6, 4, 3, 3), bias=_a(6)), same_dtype=True,
                   ndims=dict(input={3, 4}, weight={4}, bias={1})),
    "conv_transpose2d": Spec(F.conv_transpose2d,
                             dict(input=X, weight=_a(4, 2, 3, 3), bias=_a(2)),
                             same_dtype=True, ndims=dict(input={3, 4}, weight={4}, bias={1})),
    "depthwise_separable_conv2d": Spec(
        F.depthwise_separable_conv2d,
        dict(input=X, depthwise_weight=_a(8, 1, 3, 3), pointwise_weight=_a(5, 8, 1, 1),
             bias_dw=_a(8), bias_pw=_a(5)), same_dtype=True,
        ndims=dict(input={3, 4}, depthwise_weight={4}, pointwise_weight={4})),
    "max_pool2d": Spec(F.max_pool2d, dict(input=X), dict(kernel_size=2),
                       ndims=dict(input={3, 4})),
    "avg_pool2d": Spec(F.avg_pool2d, dict(input=X), dict(kernel_size=2),
                       ndims=dict(input={3, 4})),
    "adaptive_avg_pool2d": Spec(F.adaptive_avg_pool2d, dict(input=X), dict(output_size=2),
                                ndims=dict(input={3, 4})),
    "adaptive_max_pool2d": Spec(F.adaptive_max_pool2d, dict(input=X), dict(output_size=2),
                                ndims=dict(input={3, 4})),
    "lp_pool2d": Spec(F.lp_pool2d, dict(input=X), dict(norm_type=2, kernel_size=2),
                      ndims=dict(input={3, 4})),
    "spatial_pyramid_pool": Spec(F.spatial_pyramid_pool, dict(input=X), dict(levels=(1, 2)),
                                 ndims=dict(input={3, 4})),
    "batch_norm": Spec(F.batch_norm, dict(input=X, running_mean=_a(4), running_var=_a(4),
                                          weight=_a(4), bias=_a(4)),
                       same_dtype=True, ndims=dict(input={2, 3, 4})),
    "relu": Spec(F.relu, dict(input=X)),
    "leaky_relu": Spec(F.leaky_relu, dict(input=X)),
    "elu": Spec(F.elu, dict(input=X)),
    "prelu": Spec(F.prelu, dict(input=X, weight=_a(4)), same_dtype=True,
                  ndims=dict(input=ANY - {0}, weight={1})),
    "sigmoid": Spec(F.sigmoid, dict(input=X)),
    "tanh": Spec(F.tanh, dict(input=X)),
    "softmax": Spec(F.softmax, dict(input=X), dict(dim=1)),
    "log_softmax": Spec(F.log_softmax, dict(input=X), dict(dim=1)),
    "dropout": Spec(F.dropout, dict(input=X)),
    "linear": Spec(F.linear, dict(input=_a(3, 5), weight=_a(2, 5), bias=_a(2)), same_dtype=True,
                   ndims=dict(input=ANY - {0}, weight={2})),
    "cross_entropy": Spec(F.cross_entropy, dict(input=_a(3, 4), target=np.array([0, 1, 3]),
                                                weight=_a(4)),
                          floats=("input", "weight"), same_dtype=True,
                          ndims=dict(input=ANY - {0})),
    "nll_loss": Spec(F.nll_loss, dict(input=_a(3, 4), target=np.array([0, 1, 3]),
                                      weight=_a(4)),
                     floats=("input", "weight"), same_dtype=True, ndims=dict(input=ANY - {0})),
    "mse_loss": Spec(F.mse_loss, dict(input=_a(3, 4), target=_a(3, 4))),
    "l1_loss": Spec(F.l1_loss, dict(input=_a(3, 4), target=_a(3, 4))),
    "interpolate": Spec(F.interpolate, dict(input=X), dict(scale_factor=2),
                        ndims=dict(input={4})),
    "pixel_shuffle": Spec(F.pixel_shuffle, dict(input=_a(1, 8, 3, 3)),
                          dict(upscale_factor=2), ndims=dict(input=ANY - {0, 1, 2})),
    "pixel_unshuffle": Spec(F.pixel_unshuffle, dict(input=_a(1, 2, 4, 4)),
                            dict(downscale_factor=2), ndims=dict(input=ANY - {0, 1, 2})),
    # generic array ops: any dtype (NumPy promotion), so only argument cases below
    "flatten": Spec(F.flatten, dict(input=X), floats=()),
    "cat": Spec(F.cat, dict(tensors=[X, X]), dict(dim=1), floats=()),
    "add": Spec(F.add, dict(input=X, other=X), floats=()),
}


def check_message(exc, *needles):
    """The message says what was expected and what was got, and names each needle."""
    msg = str(exc)
    low = msg.lower()
    assert "expected" in low and "got" in low, f"unclear message: {msg!r}"
    for needle in needles:
        assert str(needle).lower() in low, f"{needle!r} not named in {msg!r}"


def test_every_public_function_is_covered():
    public = set(F.__all__) - {"conv_algorithms", "select_conv_algorithm"}
    assert public <= set(SPECS), public - set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_good_call_works(name):
    """So that each bad variant below fails because of its one bad argument."""
    SPECS[name].call()


def _dtype_cases():
    for name, spec in sorted(SPECS.items()):
        for arg in spec.floats:
            for dt in BAD_DTYPES:
                dt = np.dtype(dt)
                yield pytest.param(name, arg, dt, False, id=f"{name}-{arg}-{dt.name}")
                if dt.kind != "c":    # a Tensor cannot hold complex data in the first place
                    yield pytest.param(name, arg, dt, True, id=f"{name}-{arg}-{dt.name}-Tensor")


@pytest.mark.parametrize("name, arg, dtype, wrap", list(_dtype_cases()))
def test_non_float_operand_is_a_type_error(name, arg, dtype, wrap):
    spec = SPECS[name]
    bad = spec.arrays[arg].astype(dtype)
    if wrap:
        bad = fc.Tensor(bad)
    with pytest.raises(TypeError) as info:
        spec.call(**{arg: bad})
    check_message(info.value, arg, np.dtype(dtype).name)


def _mixed_cases():
    for name, spec in sorted(SPECS.items()):
        if spec.same_dtype:
            for arg in spec.floats:
                yield pytest.param(name, arg, id=f"{name}-{arg}")


@pytest.mark.parametrize("name, arg", list(_mixed_cases()))
def test_mixed_float32_float64_is_a_type_error(name, arg):
    spec = SPECS[name]
    with pytest.raises(TypeError) as info:
        spec.call(**{arg: spec.arrays[arg].astype(np.float64)})
    check_message(info.value, arg, "float64", "float32", "share one dtype")


def _ndim_cases():
    for name, spec in sorted(SPECS.items()):
        for arg, allowed in spec.ndims.items():
            for nd in sorted(set(range(0, 6)) - allowed):
                yield pytest.param(name, arg, nd, id=f"{name}-{arg}-{nd}d")


@pytest.mark.parametrize("name, arg, nd", list(_ndim_cases()))
def test_wrong_number_of_dims_is_a_value_error(name, arg, nd):
    spec = SPECS[name]
    bad = np.ones((2,) * nd, spec.arrays[arg].dtype)
    with pytest.raises(ValueError) as info:
        spec.call(**{arg: bad})
    check_message(info.value, arg, f"{nd}-D")


def _case(name, changes, error, *needles, id=None):
    return pytest.param(name, changes, error, needles, id=id)


CASES = [
    # conv2d: geometry, channels, groups, sizes
    _case("conv2d", dict(stride=0), ValueError, "stride", "positive", "0", id="stride0"),
    _case("conv2d", dict(stride=(1, -1)), ValueError, "stride", "-1", id="stride-neg"),
    _case("conv2d", dict(stride=1.5), TypeError, "stride", "1.5", id="stride-float"),
    _case("conv2d", dict(stride=True), TypeError, "stride", "True", id="stride-bool"),
    _case("conv2d", dict(stride=(1, 2, 3)), TypeError, "stride", "(1, 2, 3)", id="stride-3"),
    _case("conv2d", dict(stride="2"), TypeError, "stride", "'2'", id="stride-str"),
    _case("conv2d", dict(padding=-1), ValueError, "padding", "non-negative", "-1",
          id="padding-neg"),
    _case("conv2d", dict(padding=(0, -2)), ValueError, "padding", "-2", id="padding-neg-w"),
    _case("conv2d", dict(padding="full"), ValueError, "padding", "'same'", "'full'",
          id="padding-str"),
    _case("conv2d", dict(padding="same", stride=2), ValueError, "stride", "same", "(2, 2)",
          id="same-strided"),
    _case("conv2d", dict(dilation=0), ValueError, "dilation", "positive", "0", id="dil0"),
    _case("conv2d", dict(dilation=(1, -1)), ValueError, "dilation", "-1", id="dil-neg"),
    _case("conv2d", dict(groups=0), ValueError, "groups", "positive", "0", id="groups0"),
    _case("conv2d", dict(groups=3), ValueError, "divisible by groups", "in_channels=4",
          "groups=3", id="groups3"),
    _case("conv2d", dict(groups=2.0), TypeError, "groups", "2.0", id="groups-float"),
    _case("conv2d", dict(weight=_a(6, 3, 3, 3)), ValueError, "weight.shape[1]", "4",
          "(6, 3, 3, 3)", id="channels"),
    _case("conv2d", dict(weight=_a(5, 2, 3, 3), bias=None, groups=2), ValueError, "groups",
          "out_channels=5", id="c-out-groups"),
    _case("conv2d", dict(weight=_a(6, 4, 9, 3)), ValueError, "kernel", "padded input",
          "size 8", "effective kernel size 9", id="kernel-too-big"),
    _case("conv2d", dict(dilation=5), ValueError, "padded input", "effective kernel size 11",
          id="dilated-too-big"),
    _case("conv2d", dict(input=np.ones((2, 4, 0, 8), f32), padding=1), ValueError,
          "padded input", "0 + 2*1", id="empty-plane"),
    _case("conv2d", dict(weight=_a(0, 4, 3, 3), bias=None), ValueError, "weight",
          "(0, 4, 3, 3)", id="empty-weight"),
    _case("conv2d", dict(bias=_a(5)), ValueError, "bias", "(6,)", "(5,)", id="bias-shape"),
    _case("conv2d", dict(algorithm="fft"), ValueError, "algorithm", "'fft'",
          "im2col", id="algorithm"),
    _case("conv2d", dict(algorithm="winograd", stride=2), ValueError, "algorithm",
          "'winograd'", "3x3", "stride (2, 2)", id="algorithm-winograd"),
    _case("conv2d", dict(algorithm="depthwise"), ValueError, "algorithm", "groups", "4",
          id="algorithm-depthwise"),
    _case("conv2d", dict(input=[[[1.0]]]), TypeError, "input", "float64", id="list-input"),
    _case("conv2d", dict(input="abc"), ValueError, "input", "0-D", id="str-input"),
    # conv_transpose2d
    _case("conv_transpose2d", dict(weight=_a(3, 2, 3, 3)), ValueError, "weight.shape[0]",
          "4", "(3, 2, 3, 3)", id="t-channels"),
    _case("conv_transpose2d", dict(output_padding=2, stride=2), ValueError, "output_padding",
          "stride", "2", id="t-outpad"),
    _case("conv_transpose2d", dict(output_padding=-1), ValueError, "output_padding", "-1",
          id="t-outpad-neg"),
    _case("conv_transpose2d", dict(padding=(9, 9)), ValueError, "output size", "(-8, -8)",
          id="t-empty"),
    _case("conv_transpose2d", dict(padding="same"), TypeError, "padding", "'same'",
          id="t-same"),
    _case("conv_transpose2d", dict(stride=0), ValueError, "stride", "0", id="t-stride0"),
    _case("conv_transpose2d", dict(dilation=0), ValueError, "dilation", "0", id="t-dil0"),
    _case("conv_transpose2d", dict(groups=3), ValueError, "groups", "divisible", id="t-groups"),
    _case("conv_transpose2d", dict(bias=_a(3)), ValueError, "bias", "(2,)", "(3,)",
          id="t-bias"),
    # depthwise-separable
    _case("depthwise_separable_conv2d", dict(depthwise_weight=_a(6, 1, 3, 3)), ValueError,
          "depthwise_weight", "(6, 1, 3, 3)", "C_in = 4", id="ds-dw"),
    _case("depthwise_separable_conv2d", dict(pointwise_weight=_a(5, 4, 1, 1)), ValueError,
          "pointwise_weight", "(C_out, 8, 1, 1)", "(5, 4, 1, 1)", id="ds-pw"),
    _case("depthwise_separable_conv2d", dict(bias_dw=_a(4)), ValueError, "bias_dw", "(8,)",
          "(4,)", id="ds-bias-dw"),
    _case("depthwise_separable_conv2d", dict(bias_pw=_a(8)), ValueError, "bias_pw", "(5,)",
          "(8,)", id="ds-bias-pw"),
    _case("depthwise_separable_conv2d", dict(input=np.ones((2, 0, 8, 8), f32)), ValueError,
          "input", "channel", "(2, 0, 8, 8)", id="ds-no-channels"),
    _case("depthwise_separable_conv2d", dict(stride=0), ValueError, "stride", "0",
          id="ds-stride0"),
    # pooling
    _case("max_pool2d", dict(kernel_size=0), ValueError, "kernel_size", "0", id="mp-k0"),
    _case("max_pool2d", dict(kernel_size="a"), TypeError, "kernel_size", "'a'", id="mp-kstr"),
    _case("max_pool2d", dict(kernel_size=9), ValueError, "padded input size 8",
          "effective kernel size 9", id="mp-k-big"),
    _case("max_pool2d", dict(kernel_size=2, padding=2), ValueError, "padding", "half",
          "(2, 2)", id="mp-pad-big"),
    _case("max_pool2d", dict(padding=-1), ValueError, "padding", "-1", id="mp-pad-neg"),
    _case("max_pool2d", dict(stride=0), ValueError, "stride", "0", id="mp-stride0"),
    _case("max_pool2d", dict(dilation=0), ValueError, "dilation", "0", id="mp-dil0"),
    _case("max_pool2d", dict(input=np.ones((1, 1, 0, 4), f32), kernel_size=1), ValueError,
          "height", "padded input size 0", id="mp-empty-plane"),
    _case("avg_pool2d", dict(divisor_override=0), ValueError, "divisor_override", "0",
          id="ap-div0"),
    _case("avg_pool2d", dict(divisor_override=1.5), ValueError, "divisor_override", "1.5",
          id="ap-div-float"),
    _case("avg_pool2d", dict(padding=(0, 3), kernel_size=3), ValueError, "padding", "half",
          id="ap-pad"),
    _case("avg_pool2d", dict(kernel_size=(2, 0)), ValueError, "kernel_size", "(2, 0)",
          id="ap-k0"),
    _case("adaptive_avg_pool2d", dict(output_size=0), ValueError, "output_size", "0",
          id="aap-0"),
    _case("adaptive_avg_pool2d", dict(output_size=(-1, 2)), ValueError, "output_size",
          "(-1, 2)", id="aap-neg"),
    _case("adaptive_avg_pool2d", dict(output_size=(1, 2, 3)), TypeError, "output_size",
          "(1, 2, 3)", id="aap-3"),
    _case("adaptive_max_pool2d", dict(output_size=1.5), TypeError, "output_size", "1.5",
          id="amp-float"),
    _case("adaptive_max_pool2d", dict(output_size=None), TypeError, "output_size", "None",
          id="amp-none"),
    _case("adaptive_max_pool2d", dict(input=np.ones((1, 1, 0, 4), f32)), ValueError,
          "input plane", "H=0", id="amp-empty-plane"),
    _case("lp_pool2d", dict(norm_type=0), ValueError, "norm_type", "0", id="lp-p0"),
    _case("lp_pool2d", dict(norm_type=float("nan")), ValueError, "norm_type", "nan",
          id="lp-nan"),
    _case("lp_pool2d", dict(norm_type="2"), TypeError, "norm_type", "'2'", id="lp-str"),
    _case("lp_pool2d", dict(kernel_size=9), ValueError, "effective kernel size 9",
          id="lp-k-big"),
    _case("spatial_pyramid_pool", dict(levels=()), TypeError, "levels", "()", id="spp-empty"),
    _case("spatial_pyramid_pool", dict(levels=(0, 1)), ValueError, "level", "(0, 1)",
          id="spp-0"),
    _case("spatial_pyramid_pool", dict(levels=3), TypeError, "levels", "3", id="spp-int"),
    # batch_norm
    _case("batch_norm", dict(running_mean=_a(3)), ValueError, "running_mean", "(4,)", "(3,)",
          id="bn-rm"),
    _case("batch_norm", dict(running_var=_a(4, 1)), ValueError, "running_var", "(4, 1)",
          id="bn-rv-2d"),
    _case("batch_norm", dict(weight=_a(5)), ValueError, "weight", "(4,)", "(5,)", id="bn-w"),
    _case("batch_norm", dict(running_mean=None, running_var=None), ValueError, "running_mean",
          "eval", "None", id="bn-eval-no-stats"),
    _case("batch_norm", dict(training=True, momentum="a"), TypeError, "momentum", "'a'",
          id="bn-momentum"),
    _case("batch_norm", dict(eps=-1), ValueError, "eps", "-1", id="bn-eps"),
    _case("batch_norm", dict(input=_a(1, 4, 1, 1), training=True), ValueError,
          "more than 1 value per channel", "(1, 4, 1, 1)", id="bn-one-value"),
    # activations
    _case("leaky_relu", dict(negative_slope="a"), TypeError, "negative_slope", "'a'",
          id="leaky-slope"),
    _case("elu", dict(alpha=None), TypeError, "alpha", "None", id="elu-alpha"),
    _case("prelu", dict(weight=_a(3)), ValueError, "weight", "input.shape[1] = 4", "3",
          id="prelu-size"),
    _case("softmax", dict(dim=4), IndexError, "dim", "[-4, 3]", "4", id="softmax-dim"),
    _case("softmax", dict(dim=1.0), TypeError, "dim", "1.0", id="softmax-dim-float"),
    _case("log_softmax", dict(dim=-5), IndexError, "dim", "-5", id="log-softmax-dim"),
    _case("log_softmax", dict(dim=None), TypeError, "dim", "None", id="log-softmax-none"),
    _case("dropout", dict(p=2), ValueError, "p", "[0, 1]", "2", id="dropout-p"),
    _case("dropout", dict(p=-0.1), ValueError, "p", "-0.1", id="dropout-neg"),
    _case("dropout", dict(p="a"), TypeError, "p", "'a'", id="dropout-str"),
    # linear and shape ops
    _case("linear", dict(weight=_a(2, 4)), ValueError, "weight.shape[1]", "(3, 5)",
          "(2, 4)", id="linear-in"),
    _case("linear", dict(bias=_a(1, 2)), ValueError, "bias", "(2,)", "(1, 2)",
          id="linear-bias"),
    _case("flatten", dict(start_dim=5), ValueError, "start_dim", "[-4, 3]", "5",
          id="flatten-start"),
    _case("flatten", dict(start_dim="a"), TypeError, "start_dim", "'a'", id="flatten-str"),
    _case("flatten", dict(start_dim=3, end_dim=1), ValueError, "start_dim", "end_dim",
          id="flatten-order"),
    _case("cat", dict(tensors=[]), ValueError, "non-empty", "empty", id="cat-empty"),
    _case("cat", dict(tensors=X), TypeError, "list", "ndarray", id="cat-array"),
    _case("cat", dict(tensors=[X, _a(2, 4, 3, 2)]), ValueError, "same shape", "(2, 4, 3, 2)",
          id="cat-shapes"),
    _case("cat", dict(dim=4), ValueError, "dim", "[-4, 3]", "4", id="cat-dim"),
    _case("cat", dict(tensors=[X, _a(2, 4)]), ValueError, "dims", "(2, 4)", id="cat-ndim"),
    _case("add", dict(other=_a(3)), ValueError, "broadcastable", "(3,)", id="add-shapes"),
    _case("add", dict(alpha="a"), TypeError, "alpha", "'a'", id="add-alpha"),
    _case("add", dict(input=np.ones(3, int), other=np.ones(3, int), alpha=0.5), TypeError,
          "alpha", "0.5", id="add-int-alpha"),
    # losses
    _case("cross_entropy", dict(target=np.array([0, 1])), ValueError, "target", "(3,)",
          "(2,)", id="ce-target-shape"),
    _case("cross_entropy", dict(target=np.array([0, 1, 4])), IndexError, "target", "[0, 3]",
          "4", id="ce-target-high"),
    _case("cross_entropy", dict(target=np.array([0, -1, 2])), IndexError, "target", "-1",
          id="ce-target-neg"),
    _case("cross_entropy", dict(target=np.array([0, 1, 2 ** 40])), IndexError, "target",
          str(2 ** 40), id="ce-target-huge"),
    _case("cross_entropy", dict(target=_a(3)), ValueError, "target", "(3, 4)", "(3,)",
          id="ce-prob-shape"),
    _case("cross_entropy", dict(target=np.array([True, False, True])), TypeError, "target",
          "bool", id="ce-target-bool"),
    _case("cross_entropy", dict(target=np.array(["a", "b", "c"])), TypeError, "target",
          "<U1", id="ce-target-str"),
    _case("cross_entropy", dict(reduction="avg"), ValueError, "reduction", "'avg'",
          id="ce-reduction"),
    _case("cross_entropy", dict(label_smoothing=2.0), ValueError, "label_smoothing", "2.0",
          id="ce-smoothing"),
    _case("cross_entropy", dict(label_smoothing="a"), TypeError, "label_smoothing", "'a'",
          id="ce-smoothing-str"),
    _case("cross_entropy", dict(ignore_index="a"), TypeError, "ignore_index", "'a'",
          id="ce-ignore"),
    _case("cross_entropy", dict(weight=_a(3)), ValueError, "weight", "(4,)", "(3,)",
          id="ce-weight"),
    _case("cross_entropy", dict(input=_a(3, 0), weight=None, target=np.zeros(3, int)),
          ValueError, "class", "(3, 0)", id="ce-no-classes"),
    _case("nll_loss", dict(target=_a(3)), TypeError, "target", "float32", id="nll-float"),
    _case("nll_loss", dict(target=np.array([0, 9, 1])), IndexError, "target", "9",
          id="nll-high"),
    _case("mse_loss", dict(target=_a(4, 3)), ValueError, "target", "(3, 4)", "(4, 3)",
          id="mse-shape"),
    _case("l1_loss", dict(reduction=None), ValueError, "reduction", "None", id="l1-reduction"),
    # interpolate, pixel shuffle
    _case("interpolate", dict(size=2), ValueError, "size", "scale_factor", "both",
          id="interp-both"),
    _case("interpolate", dict(scale_factor=None), ValueError, "size", "neither",
          id="interp-neither"),
    _case("interpolate", dict(scale_factor=None, size=0), ValueError, "size", "0",
          id="interp-size0"),
    _case("interpolate", dict(scale_factor=None, size=2.5), TypeError, "size", "2.5",
          id="interp-size-float"),
    _case("interpolate", dict(scale_factor=None, size=(2, 2, 2)), TypeError, "size",
          "(2, 2, 2)", id="interp-size-3"),
    _case("interpolate", dict(scale_factor=-1), ValueError, "scale_factor", "-1",
          id="interp-scale-neg"),
    _case("interpolate", dict(scale_factor=float("inf")), ValueError, "scale_factor", "inf",
          id="interp-scale-inf"),
    _case("interpolate", dict(scale_factor=0.01), ValueError, "output size", "(0, 0)",
          id="interp-scale-small"),
    _case("interpolate", dict(mode="bicubic"), ValueError, "mode", "'bicubic'",
          id="interp-mode"),
    _case("interpolate", dict(align_corners=True), ValueError, "align_corners", "nearest",
          id="interp-ac-nearest"),
    _case("interpolate", dict(mode="bilinear", align_corners="yes"), TypeError,
          "align_corners", "'yes'", id="interp-ac-str"),
    _case("interpolate", dict(antialias=True), ValueError, "antialias", "True",
          id="interp-antialias"),
    _case("interpolate", dict(input=np.ones((1, 1, 0, 3), f32)), ValueError, "spatial size",
          "(1, 1, 0, 3)", id="interp-empty"),
    _case("pixel_shuffle", dict(upscale_factor=0), ValueError, "upscale_factor", "0",
          id="ps-0"),
    _case("pixel_shuffle", dict(upscale_factor=2.0), TypeError, "upscale_factor", "2.0",
          id="ps-float"),
    _case("pixel_shuffle", dict(upscale_factor=3), ValueError, "divisible", "9",
          "(1, 8, 3, 3)", id="ps-channels"),
    _case("pixel_unshuffle", dict(downscale_factor=3), ValueError, "divisible", "3",
          "(1, 2, 4, 4)", id="pu-size"),
]


@pytest.mark.parametrize("name, changes, error, needles", CASES)
def test_bad_argument(name, changes, error, needles):
    with pytest.raises(error) as info:
        SPECS[name].call(**changes)
    check_message(info.value, *needles)


def test_every_function_has_argument_cases():
    named = {p.values[0] for p in CASES}
    missing = set(SPECS) - named - {"relu", "sigmoid", "tanh", "mse_loss"}
    assert not missing, missing


def test_select_conv_algorithm_checks_its_argument():
    with pytest.raises(TypeError) as info:
        F.select_conv_algorithm("im2col", need_grad=False)
    check_message(info.value, "params", "ConvParams", "str")


@pytest.mark.parametrize("name", ["conv2d", "batch_norm", "linear", "prelu"])
def test_a_failed_call_changes_nothing(name):
    """Validation happens before any work: a rejected call leaves buffers untouched."""
    spec = SPECS[name]
    arrays = {k: v.copy() for k, v in spec.arrays.items()}
    before = {k: v.copy() for k, v in arrays.items()}
    with pytest.raises((TypeError, ValueError)):
        spec.fn(**dict(arrays, **spec.kwargs, input=arrays["input"].astype(np.float64)))
    for k in arrays:
        assert np.array_equal(arrays[k], before[k]), k
