"""fastconv.fuse: BatchNorm folded into the preceding convolution for inference.

Oracle: the unfused model in eval mode, with BatchNorm statistics and affine parameters made
random first (at initialisation BN is nearly the identity, which would hide a wrong fold)."""
from collections import OrderedDict

import numpy as np
import pytest

import fastconv as fc
from fastconv import models, nn
from fctest import assert_close

MODELS = [
    ("lenet5", {}, (3, 1, 28, 28)),
    ("resnet20", {}, (3, 3, 32, 32)),
    ("resnet18", dict(num_classes=10), (2, 3, 40, 40)),
    ("mobilenet_small", {}, (3, 3, 32, 32)),
    ("hourglass_autoencoder", dict(base=8), (2, 1, 14, 14)),
]


def _randomize_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            if m.running_mean is not None:
                m.running_mean[...] = rng.standard_normal(c)
                m.running_var[...] = rng.uniform(0.3, 3.0, c)
            if m.weight is not None:
                m.weight.data[...] = rng.uniform(-1.5, 1.5, c)
            if m.bias is not None:
                m.bias.data[...] = rng.standard_normal(c)
    return model


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def _eval_out(model, x):
    with fc.no_grad():
        return model.eval()(fc.tensor(x)).data


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kwargs,shape", MODELS)
def test_fused_model_matches_eval_model(name, kwargs, shape, dtype):
    fc.manual_seed(0)
    model = _randomize_bn(models.get_model(name, **kwargs)).to(dtype)
    n_bn = _count(model, nn.BatchNorm2d)
    fused = fc.fuse(model)
    assert type(fused) is type(model)
    assert not fused.training
    # every BatchNorm of these models follows a convolution
    assert _count(fused, nn.BatchNorm2d) == 0
    assert _count(fused, nn.Identity) == _count(model, nn.Identity) + n_bn
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    y = _eval_out(fused, x)
    assert y.dtype == dtype
    assert all(p.data.dtype == dtype for p in fused.parameters())
    # float32: the fused weights round differently; the BN scales go up to 1/sqrt(0.3)
    assert_close(y, _eval_out(model, x), dtype, tol=1e-10 if dtype == np.float64 else 1e-4)


def test_input_model_is_not_modified():
    model = _randomize_bn(models.resnet20())
    model.train()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    fused = fc.fuse(model)
    assert model.training and isinstance(model.bn1, nn.BatchNorm2d)
    assert model.conv1.bias is None and fused.conv1.bias is not None
    after = model.state_dict()
    assert list(after) == list(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert not np.shares_memory(fused.conv1.weight.data, model.conv1.weight.data)


def test_fused_resnet_state_dict_has_no_bn_keys():
    fused = fc.fuse(models.resnet20())
    keys = list(fused.state_dict())
    assert "layer1.0.conv1.bias" in keys and "layer2.0.downsample.0.bias" in keys
    assert not any("bn" in k or k.startswith("layer2.0.downsample.1") for k in keys)


def test_fold_formula_with_conv_bias_and_groups():
    # conv (with bias, groups=2) then BN: compared with the formula applied by hand
    rng = np.random.default_rng(3)
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2, dtype=np.float64)
    bn = _randomize_bn(nn.BatchNorm2d(6, eps=1e-3, dtype=np.float64), seed=4)
    model = nn.Sequential(conv, bn)
    fused = fc.fuse(model)
    s = bn.weight.data / np.sqrt(bn.running_var + bn.eps)
    assert_close(fused[0].weight.data, conv.weight.data * s[:, None, None, None])
    assert_close(fused[0].bias.data, (conv.bias.data - bn.running_mean) * s + bn.bias.data)
    x = rng.standard_normal((2, 4, 5, 5))
    assert_close(_eval_out(fused, x), _eval_out(model, x))


@pytest.mark.parametrize("affine,bias", [(False, True), (True, False)])
def test_bn_without_affine_or_bias(affine, bias):
    model = nn.Sequential(nn.Conv2d(3, 5, 3, bias=False, dtype=np.float64),
                          nn.BatchNorm2d(5, affine=affine, bias=bias, dtype=np.float64))
    _randomize_bn(model)
    fused = fc.fuse(model)
    assert isinstance(fused[1], nn.Identity)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    assert_close(_eval_out(fused, x), _eval_out(model, x))


@pytest.mark.parametrize("groups", [1, 2])
def test_transposed_and_depthwise_separable_convs_are_folded(groups):
    model = nn.Sequential(OrderedDict([
        ("up", nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=groups,
                                  dtype=np.float64)),
        ("bn1", nn.BatchNorm2d(6, dtype=np.float64)),
        ("ds", nn.DepthwiseSeparableConv2d(6, 8, 3, padding=1, bias=False,
                                           dtype=np.float64)),
        ("bn2", nn.BatchNorm2d(8, dtype=np.float64)),
    ]))
    _randomize_bn(model, seed=groups)
    fused = fc.fuse(model)
    assert _count(fused, nn.BatchNorm2d) == 0
    x = np.random.default_rng(2).standard_normal((2, 4, 5, 5))
    assert_close(_eval_out(fused, x), _eval_out(model, x))


def test_pairs_that_must_not_be_folded():
    bn_first = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1))
    relu_between = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.BatchNorm2d(4))
    batch_stats = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4,
                                                                   track_running_stats=False))
    shared = nn.Conv2d(3, 3, 1)
    shared_conv = nn.Sequential(shared, nn.BatchNorm2d(3), shared)
    for model in (bn_first, relu_between, batch_stats, shared_conv):
        fused = fc.fuse(model)
        assert _count(fused, nn.BatchNorm2d) == 1, model
        x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
        assert_close(_eval_out(fused, x), _eval_out(model, x))


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64)
        self.bn = nn.BatchNorm2d(3, dtype=np.float64)

    def forward(self, x):
        return fc.functional.relu(self.bn(self.conv(x)))


def test_custom_module_needs_explicit_pairs():
    model = nn.Sequential(OrderedDict(block=_randomize_bn(_Custom())))
    assert _count(fc.fuse(model), nn.BatchNorm2d) == 1  # its forward is opaque: untouched
    fused = fc.fuse(model, pairs=[("block.conv", "block.bn")])
    assert _count(fused, nn.BatchNorm2d) == 0
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    assert_close(_eval_out(fused, x), _eval_out(model, x))
    with pytest.raises(ValueError, match="expected 'block.bn' to be a convolution"):
        fc.fuse(model, pairs=[("block.bn", "block.conv")])
    with pytest.raises(ValueError, match="same module"):
        fc.fuse(model, pairs=[("block.conv", "other.bn")])
    with pytest.raises(TypeError, match="expected a fastconv.nn.Module"):
        fc.fuse(np.zeros(3))


def test_fused_model_still_runs_backward():
    # the fused copy is meant for inference, but it stays an ordinary model
    fused = fc.fuse(nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2)))
    fused(fc.tensor(np.ones((2, 1, 4, 4), np.float32))).sum().backward()
    assert fused[0].bias.grad is not None and fused[0].weight.grad is not None
