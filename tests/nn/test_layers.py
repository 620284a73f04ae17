"""Every fastconv.nn layer against torch.nn in float64: same state_dict keys, PyTorch's
weights loaded unchanged, outputs, input and parameter gradients and buffers within 1e-10.
Plus the checks that need no PyTorch (errors, shapes, train/eval behaviour)."""
from collections import OrderedDict

import numpy as np
import pytest

import fastconv as fc
from fastconv import nn
from fctest import assert_close



def _torch():
    t = pytest.importorskip("torch")
    t.set_num_threads(1)
    return t


def _x(rng, *shape):
    return rng.standard_normal(shape)


def _compare(ours, theirs, x, **kw):
    _torch()
    from nn_helpers import compare_with_torch
    return compare_with_torch(ours, theirs, x, **kw)


CONV_CASES = [
    dict(),
    dict(stride=2, padding=1),
    dict(padding=(1, 2), dilation=(2, 1), bias=False),
    dict(groups=2, stride=(1, 2), padding=1),
    dict(groups=4, padding=1),          # depthwise
    dict(padding="same", dilation=2),
    dict(padding="valid"),
]


@pytest.mark.parametrize("kw", CONV_CASES)
def test_conv2d_matches_torch(rng, kw):
    t = _torch()
    ours = nn.Conv2d(4, 8, 3, **kw)
    theirs = t.nn.Conv2d(4, 8, 3, **kw)
    _compare(ours, theirs, _x(rng, 2, 4, 9, 8))
    assert repr(ours) == repr(theirs)


CONVT_CASES = [
    dict(),
    dict(stride=2, padding=1, output_padding=1),
    dict(stride=(2, 1), padding=(0, 1), dilation=2, bias=False),
    dict(groups=2, stride=2),
]


@pytest.mark.parametrize("kw", CONVT_CASES)
def test_conv_transpose2d_matches_torch(rng, kw):
    t = _torch()
    ours = nn.ConvTranspose2d(4, 6, 3, **kw)
    theirs = t.nn.ConvTranspose2d(4, 6, 3, **kw)
    _compare(ours, theirs, _x(rng, 2, 4, 5, 6))
    assert repr(ours) == repr(theirs)


def test_conv_transpose2d_output_size_matches_torch(rng):
    t = _torch()
    ours = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    theirs = t.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    yo, yt = _compare(ours, theirs, _x(rng, 1, 3, 4, 4), extra_args=((8, 8),))
    assert yo.shape == (1, 2, 8, 8)
    with pytest.raises(ValueError, match="valid sizes"):
        ours(fc.tensor(_x(rng, 1, 3, 4, 4)), output_size=(10, 10))


def test_depthwise_separable_matches_torch_pair(rng):
    t = _torch()
    ours = nn.DepthwiseSeparableConv2d(3, 5, 3, stride=2, padding=1, depth_multiplier=2)
    theirs = t.nn.Sequential(OrderedDict([
        ("depthwise", t.nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3)),
        ("pointwise", t.nn.Conv2d(6, 5, 1))]))
    assert list(ours.state_dict()) == ["depthwise.weight", "depthwise.bias",
                                       "pointwise.weight", "pointwise.bias"]
    _compare(ours, theirs, _x(rng, 2, 3, 7, 7))
    no_bias = nn.DepthwiseSeparableConv2d(3, 5, 3, bias=False)
    assert list(no_bias.state_dict()) == ["depthwise.weight", "pointwise.weight"]


POOL_CASES = [
    ("MaxPool2d", (2,), {}),
    ("MaxPool2d", (3,), dict(stride=2, padding=1, dilation=1, ceil_mode=True)),
    ("MaxPool2d", ((2, 3),), dict(stride=1, dilation=2)),
    ("AvgPool2d", (2,), {}),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, count_include_pad=False, ceil_mode=True)),
    ("AdaptiveAvgPool2d", ((1, 1),), {}),
    ("AdaptiveAvgPool2d", ((3, 2),), {}),
    ("AdaptiveMaxPool2d", (3,), {}),
    ("LPPool2d", (2, 2), {}),
    ("LPPool2d", (3, (2, 3)), dict(stride=1)),
]


@pytest.mark.parametrize("name,args,kw", POOL_CASES)
def test_pooling_matches_torch(rng, name, args, kw):
    t = _torch()
    ours = getattr(nn, name)(*args, **kw)
    theirs = getattr(t.nn, name)(*args, **kw)
    x = _x(rng, 2, 3, 9, 8)
    if name == "LPPool2d":
        x = np.abs(x) + 0.1     # positive inputs: the p-th root is smooth there
    _compare(ours, theirs, x)
    assert repr(ours) == repr(theirs)


def test_spp_is_concatenated_adaptive_max_pools(rng):
    x = fc.tensor(_x(rng, 2, 3, 11, 7))
    y = nn.SPP((1, 2, 4))(x)
    assert y.shape == (2, 3 * (1 + 4 + 16))
    parts = [nn.AdaptiveMaxPool2d(L)(x).data.reshape(2, -1) for L in (1, 2, 4)]
    assert_close(y.data, np.concatenate(parts, axis=1))


@pytest.mark.parametrize("kw", [dict(), dict(momentum=None), dict(momentum=0.3, eps=1e-3),
                                dict(affine=False), dict(track_running_stats=False)])
def test_batchnorm2d_matches_torch_train_then_eval(rng, kw):
    t = _torch()
    ours, theirs = nn.BatchNorm2d(3, **kw), t.nn.BatchNorm2d(3, **kw)
    if kw.get("affine", True):
        with t.no_grad():    # non-trivial affine parameters
            theirs.weight.uniform_(0.5, 1.5)
            theirs.bias.uniform_(-0.5, 0.5)
    for step in range(3):    # three training steps: running stats and num_batches_tracked
        _compare(ours, theirs, _x(rng, 4, 3, 5, 5) * 2 + step, train=True)
        for p in theirs.parameters():
            p.grad = None
        ours.zero_grad()
    _compare(ours, theirs, _x(rng, 2, 3, 4, 4), train=False)
    want = (f"BatchNorm2d(3, eps={kw.get('eps', 1e-5)}, momentum={kw.get('momentum', 0.1)}, "
            f"affine={kw.get('affine', True)}, bias={kw.get('affine', True)}, "
            f"track_running_stats={kw.get('track_running_stats', True)})")
    assert repr(ours) == want


def test_batchnorm2d_buffers_and_errors():
    bn = nn.BatchNorm2d(4)
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert sd["num_batches_tracked"].dtype == np.int64 and sd["num_batches_tracked"].shape == ()
    assert np.all(sd["weight"] == 1) and np.all(sd["bias"] == 0)
    assert np.all(sd["running_mean"] == 0) and np.all(sd["running_var"] == 1)
    with pytest.raises(ValueError, match="expected 4D input"):
        bn(fc.tensor(np.zeros((2, 4), np.float32)))
    assert list(nn.BatchNorm2d(4, track_running_stats=False).state_dict()) == ["weight", "bias"]


def test_batchnorm2d_eval_does_not_touch_running_stats(rng):
    bn = nn.BatchNorm2d(3).eval()
    before = bn.state_dict()
    bn(fc.tensor(_x(rng, 4, 3, 5, 5).astype(np.float32)))
    for k, v in bn.state_dict().items():
        assert np.array_equal(v, before[k]), k
    bn.train()
    bn(fc.tensor(_x(rng, 4, 3, 5, 5).astype(np.float32)))
    assert int(bn.num_batches_tracked) == 1
    assert not np.array_equal(bn.running_mean, before["running_mean"])


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(rng, bias):
    t = _torch()
    ours, theirs = nn.Linear(7, 5, bias=bias), t.nn.Linear(7, 5, bias=bias)
    _compare(ours, theirs, _x(rng, 3, 7))
    _compare(ours, theirs, _x(rng, 2, 4, 7))
    assert repr(ours) == repr(theirs)


ELEMENTWISE = [
    ("ReLU", (), {}), ("LeakyReLU", (), {}), ("LeakyReLU", (0.2,), {}), ("ELU", (), {}),
    ("ELU", (0.5,), {}), ("Sigmoid", (), {}), ("Tanh", (), {}), ("Softmax", (1,), {}),
    ("Softmax", (-1,), {}), ("LogSoftmax", (1,), {}), ("Identity", (), {}),
    ("Flatten", (), {}), ("Flatten", (0, 2), {}), ("PReLU", (), {}), ("PReLU", (3,), {}),
    ("PixelShuffle", (2,), {}), ("PixelUnshuffle", (2,), {}), ("Dropout", (0.0,), {}),
    ("Upsample", (), dict(scale_factor=2)),
    ("Upsample", (), dict(size=(5, 7), mode="bilinear", align_corners=False)),
    ("Upsample", (), dict(scale_factor=1.5, mode="bilinear", align_corners=True)),
]


@pytest.mark.parametrize("name,args,kw", ELEMENTWISE)
def test_simple_layers_match_torch(rng, name, args, kw):
    t = _torch()
    ours, theirs = getattr(nn, name)(*args, **kw), getattr(t.nn, name)(*args, **kw)
    c = 12 if name == "PixelShuffle" else 3
    _compare(ours, theirs, _x(rng, 2, c, 4, 6), train=True)
    if name not in ("Upsample",):
        assert repr(ours) == repr(theirs)


def test_prelu_and_softmax_state():
    assert list(nn.PReLU(3).state_dict()) == ["weight"]
    assert np.all(nn.PReLU(3).weight.data == 0.25)
    assert np.all(nn.PReLU(init=0.1).weight.data == np.float32(0.1))


def test_dropout_train_and_eval(rng):
    fc.manual_seed(0)
    drop = nn.Dropout(0.5)
    x = fc.tensor(np.ones((100, 100), np.float32))
    y = drop(x).data
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert 0.45 < (y == 0).mean() < 0.55
    assert np.array_equal(drop.eval()(x).data, x.data)
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


@pytest.mark.parametrize("kw", [dict(), dict(reduction="sum"), dict(label_smoothing=0.1),
                                dict(ignore_index=2), dict(weight=True, reduction="mean")])
def test_cross_entropy_loss_matches_torch(rng, kw):
    t = _torch()
    kw = dict(kw)
    x = _x(rng, 6, 4)
    target = np.array([0, 1, 2, 3, 2, 1])
    weight = rng.uniform(0.5, 2, 4) if kw.pop("weight", False) else None
    ours = nn.CrossEntropyLoss(weight=weight, **kw)
    theirs = t.nn.CrossEntropyLoss(weight=None if weight is None else t.tensor(weight), **kw)
    xo, xt = fc.tensor(x, requires_grad=True), t.tensor(x, requires_grad=True)
    lo, lt = ours(xo, fc.tensor(target)), theirs(xt, t.tensor(target))
    assert_close(lo.data, lt.detach().numpy())
    lo.backward()
    lt.backward()
    assert_close(xo.grad, xt.grad.numpy())
    assert list(ours.state_dict()) == list(theirs.state_dict())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_torch(rng, reduction):
    t = _torch()
    a, b = _x(rng, 3, 4), _x(rng, 3, 4)
    ao = fc.tensor(a, requires_grad=True)
    at = t.tensor(a, requires_grad=True)
    lo = nn.MSELoss(reduction)(ao, b)
    lt = t.nn.MSELoss(reduction=reduction)(at, t.tensor(b))
    assert_close(lo.data, lt.detach().numpy())
    cot = np.ones(lo.shape)
    lo.backward(cot)
    lt.backward(t.tensor(cot))
    assert_close(ao.grad, at.grad.numpy())


def test_constructor_errors():
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(1, 1, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError):
        nn.Conv2d(3, 4, 0)
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss("avg")
    with pytest.raises(TypeError, match="dtype"):
        nn.Linear(2, 2, dtype=np.int32)


def test_conv2d_algorithm_and_dtype_arguments(rng):
    x = fc.tensor(_x(rng, 1, 2, 6, 6))
    a = nn.Conv2d(2, 3, 3, algorithm="direct", dtype=np.float64)
    b = nn.Conv2d(2, 3, 3, algorithm="im2col", dtype=np.float64)
    assert a.weight.dtype == np.float64
    b.load_state_dict(a.state_dict())
    assert_close(a(x).data, b(x).data)


def test_float32_layers_keep_float32(rng):
    x = fc.tensor(_x(rng, 2, 3, 8, 8).astype(np.float32))
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.PReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(36, 5), nn.Softmax(1))
    assert net(x).dtype == np.float32


def test_batchnorm2d_without_bias_matches_torch(rng):
    t = _torch()
    import inspect
    if "bias" not in inspect.signature(t.nn.BatchNorm2d).parameters:
        pytest.skip("this PyTorch has no BatchNorm2d(bias=...)")
    ours, theirs = nn.BatchNorm2d(3, bias=False), t.nn.BatchNorm2d(3, bias=False)
    assert list(ours.state_dict()) == ["weight", "running_mean", "running_var",
                                       "num_batches_tracked"]
    _compare(ours, theirs, _x(rng, 4, 3, 3, 3), train=True)
