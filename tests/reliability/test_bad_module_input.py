"""Bad arguments to every ``fastconv.nn`` layer (constructor and forward) and bad state dicts
raise TypeError/ValueError (IndexError/KeyError where Python convention says so) with a
message naming the argument, what was expected and what was got."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import nn
from fastconv.nn.module import StateDictError
from test_bad_input import check_message

f32 = np.float32
X = np.ones((2, 4, 8, 8), f32)


def _m(layer, make, error, *needles, id):
    """``make()`` builds the module (and calls it): ``layer`` is the class it exercises."""
    return pytest.param(layer, make, error, needles, id=id)


CASES = [
    # constructors
    _m("Conv2d", lambda: nn.Conv2d(0, 4, 3), ValueError, "in_channels", "0", id="conv-in0"),
    _m("Conv2d", lambda: nn.Conv2d("3", 4, 3), ValueError, "in_channels", "'3'",
       id="conv-in-str"),
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 0), ValueError, "kernel_size", "(0, 0)", id="conv-k0"),
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 2.5), ValueError, "kernel_size", "2.5",
       id="conv-k-float"),
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, "stride", "(0, 0)",
       id="conv-stride0"),
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, "padding", "(-1, -1)",
       id="conv-pad-neg"),
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, "padding", "'full'",
       id="conv-pad-str"),
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 3, dilation=0), ValueError, "dilation", "(0, 0)",
       id="conv-dil0"),
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "in_channels",
       "divisible by groups", "groups=2", id="conv-groups"),
    _m("Conv2d", lambda: nn.Conv2d(4, 3, 3, groups=2), ValueError, "out_channels",
       "divisible by groups", id="conv-groups-out"),
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 3, groups=0), ValueError, "groups", "0",
       id="conv-groups0"),
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 3, padding_mode="reflect"), ValueError,
       "padding_mode", "'reflect'", id="conv-padmode"),
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 3, dtype=np.int32), TypeError, "dtype", "int32",
       id="conv-dtype"),
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, "stride",
       "(2, 2)", "same", id="conv-same-strided"),
    _m("ConvTranspose2d", lambda: nn.ConvTranspose2d(3, 4, 3, padding="same"), ValueError,
       "padding", "'same'", id="convt-same"),
    _m("DepthwiseSeparableConv2d", lambda: nn.DepthwiseSeparableConv2d(0, 4, 3), ValueError,
       "in_channels", "0", id="ds-in0"),
    _m("DepthwiseSeparableConv2d", lambda: nn.DepthwiseSeparableConv2d(3, 0, 3), ValueError,
       "out_channels", "0", id="ds-out0"),
    _m("DepthwiseSeparableConv2d",
       lambda: nn.DepthwiseSeparableConv2d(3, 4, 3, depth_multiplier=0), ValueError,
       "depth_multiplier", "0", id="ds-mult0"),
    _m("BatchNorm2d", lambda: nn.BatchNorm2d(0), ValueError, "num_features", "0", id="bn-0"),
    _m("BatchNorm2d", lambda: nn.BatchNorm2d(3.0), ValueError, "num_features", "3.0",
       id="bn-float"),
    _m("Linear", lambda: nn.Linear(-1, 3), ValueError, "in_features", "-1", id="lin-neg"),
    _m("Linear", lambda: nn.Linear(4, "a"), ValueError, "out_features", "'a'", id="lin-str"),
    _m("Dropout", lambda: nn.Dropout(2), ValueError, "p", "[0, 1]", "2", id="dropout-2"),
    _m("Dropout", lambda: nn.Dropout("a"), TypeError, "p", "'a'", id="dropout-str"),
    _m("Dropout", lambda: nn.Dropout(None), TypeError, "p", "None", id="dropout-none"),
    _m("PReLU", lambda: nn.PReLU(0), ValueError, "num_parameters", "0", id="prelu-0"),
    _m("PReLU", lambda: nn.PReLU(4, init="a"), TypeError, "init", "'a'", id="prelu-init"),
    _m("SPP", lambda: nn.SPP(3), TypeError, "levels", "3", id="spp-int"),
    _m("CrossEntropyLoss", lambda: nn.CrossEntropyLoss(reduction="x"), ValueError,
       "reduction", "'x'", id="ce-reduction"),
    _m("NLLLoss", lambda: nn.NLLLoss(reduction="avg"), ValueError, "reduction", "'avg'",
       id="nll-reduction"),
    _m("MSELoss", lambda: nn.MSELoss(reduction=None), ValueError, "reduction", "None",
       id="mse-reduction"),
    _m("L1Loss", lambda: nn.L1Loss(reduction="x"), ValueError, "reduction", "'x'",
       id="l1-reduction"),
    # forward: wrong channels, dims, dtypes and sizes
    _m("Conv2d", lambda: nn.Conv2d(3, 4, 3)(X), ValueError, "input channels", "4",
       "(4, 3, 3, 3)", id="conv-fwd-channels"),
    _m("Conv2d", lambda: nn.Conv2d(4, 4, 3)(X[0, 0]), ValueError, "input", "2-D",
       id="conv-fwd-ndim"),
    _m("Conv2d", lambda: nn.Conv2d(4, 4, 3)(X.astype(np.float64)), TypeError, "input=float64",
       "weight=float32", id="conv-fwd-f64"),
    _m("Conv2d", lambda: nn.Conv2d(4, 4, 3)(X.astype(np.int64)), TypeError, "input", "int64",
       id="conv-fwd-int"),
    _m("Conv2d", lambda: nn.Conv2d(4, 4, 9)(X), ValueError, "padded input size 8",
       "effective kernel size 9", id="conv-fwd-small"),
    _m("Conv2d", lambda: nn.Conv2d(4, 4, 3, algorithm="fft")(X), ValueError, "algorithm",
       "'fft'", id="conv-fwd-alg"),
    _m("ConvTranspose2d", lambda: nn.ConvTranspose2d(3, 4, 3)(X), ValueError,
       "weight.shape[0]", "4", id="convt-fwd-channels"),
    _m("ConvTranspose2d",
       lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=2)(X), ValueError,
       "output_padding", "stride", id="convt-fwd-outpad"),
    _m("ConvTranspose2d", lambda: nn.ConvTranspose2d(4, 2, 3, stride=2)(X, output_size=(40, 40)),
       ValueError, "output size", "(40, 40)", "17", "18", id="convt-fwd-size"),
    _m("ConvTranspose2d", lambda: nn.ConvTranspose2d(4, 2, 3, stride=2)(X, output_size=17),
       ValueError, "output_size", "17", id="convt-fwd-size-int"),
    _m("ConvTranspose2d",
       lambda: nn.ConvTranspose2d(4, 2, 3, stride=2)(X, output_size=("a", "b")), ValueError,
       "output_size", "('a', 'b')", id="convt-fwd-size-str"),
    _m("ConvTranspose2d",
       lambda: nn.ConvTranspose2d(4, 2, 3, stride=2)(X, output_size=(1, 17, 17)), ValueError,
       "output_size", "(1, 17, 17)", id="convt-fwd-size-3"),
    _m("DepthwiseSeparableConv2d", lambda: nn.DepthwiseSeparableConv2d(3, 5, 3)(X),
       ValueError, "depthwise_weight", "C_in = 4", id="ds-fwd-channels"),
    _m("MaxPool2d", lambda: nn.MaxPool2d(0)(X), ValueError, "kernel_size", "0", id="mp-k0"),
    _m("MaxPool2d", lambda: nn.MaxPool2d("a")(X), TypeError, "kernel_size", "'a'",
       id="mp-kstr"),
    _m("MaxPool2d", lambda: nn.MaxPool2d(3, padding=2)(X), ValueError, "padding", "half",
       id="mp-pad"),
    _m("AvgPool2d", lambda: nn.AvgPool2d(2, padding=2)(X), ValueError, "padding", "half",
       id="ap-pad"),
    _m("AvgPool2d", lambda: nn.AvgPool2d(2)(X.astype(bool)), TypeError, "input", "bool",
       id="ap-bool"),
    _m("AdaptiveAvgPool2d", lambda: nn.AdaptiveAvgPool2d(0)(X), ValueError, "output_size",
       "0", id="aap-0"),
    _m("AdaptiveMaxPool2d", lambda: nn.AdaptiveMaxPool2d(None)(X), TypeError, "output_size",
       "None", id="amp-none"),
    _m("LPPool2d", lambda: nn.LPPool2d(-1, 2)(X), ValueError, "norm_type", "-1", id="lp-neg"),
    _m("SPP", lambda: nn.SPP((0, 1))(X), ValueError, "level", "(0, 1)", id="spp-0"),
    _m("BatchNorm2d", lambda: nn.BatchNorm2d(3)(X), ValueError, "weight", "(4,)", "(3,)",
       id="bn-fwd-channels"),
    _m("BatchNorm2d", lambda: nn.BatchNorm2d(4)(X[0]), ValueError, "4D input", "3D",
       id="bn-fwd-ndim"),
    _m("BatchNorm2d", lambda: nn.BatchNorm2d(4)(X.astype(np.float64)), TypeError,
       "input=float64", "weight=float32", id="bn-fwd-f64"),
    _m("BatchNorm2d", lambda: nn.BatchNorm2d(4, momentum="a")(X), TypeError, "momentum",
       "'a'", id="bn-fwd-momentum"),
    _m("BatchNorm2d", lambda: nn.BatchNorm2d(4, eps=-1.0)(X), ValueError, "eps", "-1",
       id="bn-fwd-eps"),
    _m("BatchNorm2d", lambda: nn.BatchNorm2d(4)(X[:1, :, :1, :1]), ValueError,
       "more than 1 value per channel", "(1, 4, 1, 1)", id="bn-fwd-one"),
    _m("Linear", lambda: nn.Linear(5, 3)(np.ones((2, 4), f32)), ValueError, "weight.shape[1]",
       "(2, 4)", id="lin-fwd-in"),
    _m("Linear", lambda: nn.Linear(4, 3)(np.ones((2, 4))), TypeError, "input=float64",
       id="lin-fwd-f64"),
    _m("Flatten", lambda: nn.Flatten(7)(X), ValueError, "start_dim", "7", id="flatten-7"),
    _m("ReLU", lambda: nn.ReLU()(np.ones(3, int)), TypeError, "input", "int64", id="relu-int"),
    _m("LeakyReLU", lambda: nn.LeakyReLU("a")(X), TypeError, "negative_slope", "'a'",
       id="leaky-slope"),
    _m("PReLU", lambda: nn.PReLU(3)(X), ValueError, "weight", "input.shape[1] = 4",
       id="prelu-fwd"),
    _m("PReLU", lambda: nn.PReLU(4)(X.astype(np.float64)), TypeError, "float64",
       id="prelu-fwd-f64"),
    _m("ELU", lambda: nn.ELU("a")(X), TypeError, "alpha", "'a'", id="elu-alpha"),
    _m("Sigmoid", lambda: nn.Sigmoid()(X.astype(np.complex64)), TypeError, "input",
       "complex64", id="sigmoid-complex"),
    _m("Tanh", lambda: nn.Tanh()(X.astype(np.float16)), TypeError, "input", "float16",
       id="tanh-f16"),
    _m("Softmax", lambda: nn.Softmax(dim=9)(X), IndexError, "[-4, 3]", "9", id="softmax-dim"),
    _m("Softmax", lambda: nn.Softmax()([1, 2]), TypeError, "input", "int64", id="softmax-list"),
    _m("LogSoftmax", lambda: nn.LogSoftmax(dim="a")(X), TypeError, "dim", "'a'",
       id="logsoftmax-dim"),
    _m("Upsample", lambda: nn.Upsample()(X), ValueError, "size", "neither", id="up-neither"),
    _m("Upsample", lambda: nn.Upsample(scale_factor=2, mode="cubic")(X), ValueError, "mode",
       "'cubic'", id="up-mode"),
    _m("Upsample", lambda: nn.Upsample(scale_factor=-1.0)(X), ValueError, "scale_factor", "-1",
       id="up-scale"),
    _m("PixelShuffle", lambda: nn.PixelShuffle(0)(X), ValueError, "upscale_factor", "0",
       id="ps-0"),
    _m("PixelUnshuffle", lambda: nn.PixelUnshuffle(3)(X), ValueError, "divisible", "3",
       id="pu-3"),
    _m("CrossEntropyLoss", lambda: nn.CrossEntropyLoss()(np.ones((3, 4), f32),
                                                         np.array([0, 1, 4])),
       IndexError, "target", "[0, 3]", "4", id="ce-fwd-range"),
    _m("CrossEntropyLoss", lambda: nn.CrossEntropyLoss()(np.ones((3, 4), f32),
                                                         np.array([[0, 1, 2]])),
       ValueError, "target", "(3,)", "(1, 3)", id="ce-fwd-shape"),
    _m("CrossEntropyLoss", lambda: nn.CrossEntropyLoss(weight=np.ones(3, f32))(
        np.ones((3, 4), f32), np.array([0, 1, 2])), ValueError, "weight", "(4,)", "(3,)",
       id="ce-fwd-weight"),
    _m("CrossEntropyLoss", lambda: nn.CrossEntropyLoss(label_smoothing=2.0)(
        np.ones((3, 4), f32), np.array([0, 1, 2])), ValueError, "label_smoothing", "2.0",
       id="ce-fwd-smoothing"),
    _m("NLLLoss", lambda: nn.NLLLoss()(np.ones((3, 4), f32), np.array([0, -5, 1])),
       IndexError, "target", "-5", id="nll-fwd-range"),
    _m("MSELoss", lambda: nn.MSELoss()(np.ones((3, 4), f32), np.ones((4, 3), f32)), ValueError,
       "target", "(3, 4)", "(4, 3)", id="mse-fwd-shape"),
    _m("L1Loss", lambda: nn.L1Loss()(np.ones(3, f32), np.ones(3, int)), TypeError, "target",
       "int64", id="l1-fwd-int"),
]


@pytest.mark.parametrize("layer, make, error, needles", CASES)
def test_bad_module_argument(layer, make, error, needles):
    with pytest.raises(error) as info:
        make()
    check_message(info.value, *needles)


def test_every_layer_is_covered():
    covered = {p.values[0] for p in CASES}
    layers = set(nn.layers.__all__) - {"Identity"}   # takes anything, as PyTorch's
    assert layers <= covered, layers - covered
    assert nn.Identity(1, "a", k=None)(X) is X


# ----------------------------------------------------------------------------- state dicts

def _net():
    fc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 4 * 4, 3))


def _load_fails(net, sd, error):
    before = {k: v.copy() for k, v in net.state_dict().items()}
    with pytest.raises(error) as info:
        net.load_state_dict(sd)
    after = net.state_dict()
    for k in before:      # all or nothing: a failed load copies nothing
        assert np.array_equal(before[k], after[k]), k
    return info.value


def test_missing_keys_are_a_key_error_naming_them():
    net = _net()
    sd = net.state_dict()
    del sd["0.weight"], sd["1.running_var"]
    err = _load_fails(net, sd, KeyError)
    assert isinstance(err, RuntimeError)     # what PyTorch raises
    assert '"0.weight", "1.running_var"' in str(err) and "Missing key(s)" in str(err)
    assert net.load_state_dict(sd, strict=False).missing_keys == ["0.weight", "1.running_var"]


def test_unexpected_keys_are_a_key_error_naming_them():
    net = _net()
    sd = dict(net.state_dict(), **{"2.weight": np.ones(3, f32)})
    err = _load_fails(net, sd, KeyError)
    assert isinstance(err, RuntimeError) and isinstance(err, StateDictError)
    assert 'Unexpected key(s) in state_dict: "2.weight"' in str(err)
    assert net.load_state_dict(sd, strict=False).unexpected_keys == ["2.weight"]


@pytest.mark.parametrize("strict", [True, False])
def test_wrong_shape_is_a_value_error_naming_key_and_shapes(strict):
    net = _net()
    sd = dict(net.state_dict(), **{"4.weight": np.ones((3, 31), f32)})
    before = net.state_dict()
    with pytest.raises(ValueError) as info:
        net.load_state_dict(sd, strict=strict)
    assert isinstance(info.value, RuntimeError)
    assert "size mismatch for 4.weight" in str(info.value)
    assert "(3, 31)" in str(info.value) and "(3, 32)" in str(info.value)
    for k, v in net.state_dict().items():
        assert np.array_equal(v, before[k]), k


@pytest.mark.parametrize("value, dtype", [
    (np.ones((2, 1, 3, 3), np.complex64), "complex64"),
    ("weights", "<U7"),
    (None, "object"),
    (np.empty((2, 1, 3, 3), object), "object"),
])
def test_non_numeric_value_is_a_type_error(value, dtype):
    net = _net()
    sd = dict(net.state_dict(), **{"0.weight": value})
    err = _load_fails(net, sd, TypeError)
    check_message(err, "0.weight", dtype)


def test_not_a_mapping_is_a_type_error():
    with pytest.raises(TypeError, match="dict-like"):
        _net().load_state_dict([("0.weight", np.zeros(3))])


def test_good_state_dict_round_trips():
    """The positive control: the same machinery loads a matching dict exactly."""
    a, b = _net(), _net()
    for p in b.parameters():
        p.data[...] = np.random.default_rng(1).standard_normal(p.shape)
    a.load_state_dict(b.state_dict())
    for k, v in a.state_dict().items():
        assert np.array_equal(v, b.state_dict()[k]), k
