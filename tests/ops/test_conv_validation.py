"""Bad arguments to the conv ops raise TypeError/ValueError saying what was expected and got."""
import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F

X = np.zeros((2, 4, 8, 8), np.float32)
W = np.zeros((6, 4, 3, 3), np.float32)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(input=np.zeros((4, 8), np.float32)), ValueError, "input to be 3-D or 4-D, got 2-D"),
    (dict(weight=np.zeros((6, 4, 3), np.float32)), ValueError, "weight to be 4-D, got 3-D"),
    (dict(weight=np.zeros((6, 3, 3, 3), np.float32)), ValueError, r"weight.shape\[1\]"),
    (dict(groups=3), ValueError, "divisible by groups"),
    (dict(groups=0), ValueError, "groups to be positive"),
    (dict(groups=2.0), TypeError, "groups to be an int"),
    (dict(weight=np.zeros((5, 2, 3, 3), np.float32), groups=2), ValueError, "divisible"),
    (dict(stride=0), ValueError, "stride to be positive"),
    (dict(stride=(1, -1)), ValueError, "stride to be positive"),
    (dict(stride=1.5), TypeError, "stride to be an int or a pair"),
    (dict(stride=True), TypeError, "stride"),
    (dict(stride=(1, 2, 3)), TypeError, "stride"),
    (dict(dilation=0), ValueError, "dilation to be positive"),
    (dict(padding=-1), ValueError, "padding to be non-negative"),
    (dict(padding="full"), ValueError, "'same' or 'valid'"),
    (dict(padding="same", stride=2), ValueError, "requires stride 1"),
    (dict(weight=np.zeros((6, 4, 9, 3), np.float32)), ValueError,
     r"padded input size 8 \+ 2\*0 = 8, effective kernel size 9"),
    (dict(dilation=5), ValueError, r"effective kernel size 11 \(dilation 5"),
    (dict(bias=np.zeros(5, np.float32)), ValueError, r"bias of shape \(6,\)"),
    (dict(bias=np.zeros((6, 1), np.float32)), ValueError, "bias to be 1-D"),
    (dict(input=X.astype(np.float64)), TypeError, "input=float64, weight=float32"),
    (dict(bias=np.zeros(6, np.float64)), TypeError, "share one dtype"),
    (dict(input=X.astype(np.float16)), TypeError, "input to be float32 or float64, got float16"),
    (dict(input=X.astype(np.int32)), TypeError, "got int32"),
    (dict(input=X.astype(np.complex64)), TypeError, "got complex64"),
    (dict(input=X.astype(bool)), TypeError, "got bool"),
    (dict(algorithm="fft"), ValueError, "algorithm to be None or one of"),
    (dict(algorithm="depthwise"), ValueError, "needs groups == in_channels"),
])
def test_conv2d_bad_arguments(kwargs, error, match):
    # conv2d keeps the outcome of its checks per call signature (conv._PLANS): good calls
    # first, so that a bad call which looks like one of them must still be caught
    F.conv2d(X, W)
    F.conv2d(X, W, stride=1, padding=0, dilation=1, groups=1)
    F.conv2d(X, W, np.zeros(6, np.float32), stride=(1, 1), padding=(0, 0))
    args = dict(input=X, weight=W)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        F.conv2d(**args)


def test_conv2d_plans_are_kept_per_signature(monkeypatch):
    """A repeated call reuses its checked plan; any change of shape, dtype, setting, setting
    type or grad mode is a new signature; non-plain settings (lists, NumPy ints) are checked
    every call; the store is bounded."""
    from fastconv.functional import conv
    monkeypatch.setattr(conv, "_PLANS", {})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    ref = F.conv2d(x, w, padding=1).data
    assert len(conv._PLANS) == 1
    np.testing.assert_array_equal(F.conv2d(x, w, padding=1).data, ref)
    assert len(conv._PLANS) == 1
    # the same values in other types: checked every call, same result, nothing stored
    for padding in ([1, 1], np.int64(1), (np.int32(1), 1)):
        np.testing.assert_array_equal(F.conv2d(x, w, padding=padding).data, ref)
    assert len(conv._PLANS) == 1
    with pytest.raises(TypeError, match="padding to be an int or a pair"):
        F.conv2d(x, w, padding=True)
    # another shape, dtype, grad mode, unbatched input: new entries (or none), right results
    F.conv2d(x[:1], w, padding=1)
    F.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1)
    F.conv2d(x, fc.Tensor(w, requires_grad=True), padding=1)
    assert len(conv._PLANS) == 4
    np.testing.assert_array_equal(F.conv2d(x[0], w, padding=1).data, ref[0])
    np.testing.assert_array_equal(F.conv2d(x[0], w, padding=1).data, ref[0])
    with pytest.raises(ValueError, match=r"bias of shape \(6,\)"):
        F.conv2d(x, w, np.zeros(5, np.float32), padding=1)
    monkeypatch.setattr(conv, "_PLANS_MAX", 3)
    monkeypatch.setattr(conv, "_PLANS", {})
    for n in range(1, 8):
        F.conv2d(x[:1].repeat(n, axis=0), w, padding=1)
        assert len(conv._PLANS) <= 3


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(weight=np.zeros((3, 2, 3, 3), np.float32)), ValueError, r"weight.shape\[0\] == "),
    (dict(output_padding=2, stride=2), ValueError, "output_padding smaller than stride"),
    (dict(output_padding=-1), ValueError, "output_padding to be non-negative"),
    (dict(padding=(9, 9)), ValueError, "output would be empty"),
    (dict(groups=3), ValueError, "divisible by groups"),
    (dict(input=X.astype(np.float64)), TypeError, "share one dtype"),
])
def test_conv_transpose2d_bad_arguments(kwargs, error, match):
    args = dict(input=X, weight=np.zeros((4, 2, 3, 3), np.float32))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        F.conv_transpose2d(**args)


def test_depthwise_separable_bad_shapes():
    x = np.zeros((1, 4, 8, 8))
    with pytest.raises(ValueError, match="depthwise_weight of shape"):
        F.depthwise_separable_conv2d(x, np.zeros((6, 1, 3, 3)), np.zeros((2, 6, 1, 1)))
    with pytest.raises(ValueError, match=r"pointwise_weight of shape \(C_out, 8, 1, 1\)"):
        F.depthwise_separable_conv2d(x, np.zeros((8, 1, 3, 3)), np.zeros((2, 4, 1, 1)))


def test_thread_setting_is_validated():
    with pytest.raises(ValueError, match="n >= 1"):
        fc.set_num_threads(0)
    with pytest.raises(TypeError, match="expected an int"):
        fc.set_num_threads("2")
