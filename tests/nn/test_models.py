"""fastconv.models: shapes, parameter counts, state_dict keys and numerics against
hand-built PyTorch twins (torchvision is not needed), and a short training smoke test."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import models, nn
from fastconv.data import DataLoader, SyntheticShapes
from fastconv.nn.layers import fused as fused_mod
from fastconv.optim import SGD


def _n_params(model):
    return sum(p.data.size for p in model.parameters())


@pytest.mark.parametrize("name,kwargs,shape,out", [
    ("lenet5", {}, (1, 28, 28), (10,)),
    ("lenet5", dict(num_classes=5, in_channels=3, input_size=32), (3, 32, 32), (5,)),
    ("resnet20", {}, (3, 32, 32), (10,)),
    ("resnet20", dict(in_channels=1), (1, 28, 28), (10,)),
    ("resnet18", dict(num_classes=10, in_channels=1), (1, 28, 28), (10,)),
    ("mobilenet_small", {}, (3, 32, 32), (10,)),
    ("mobilenet_small", dict(in_channels=1), (1, 28, 28), (10,)),
    ("hourglass_autoencoder", {}, (1, 28, 28), (1, 28, 28)),
    ("hourglass_autoencoder", dict(in_channels=3, base=8), (3, 32, 32), (3, 32, 32)),
    ("hourglass_autoencoder", dict(base=4), (1, 7, 9), (1, 7, 9)),
])
def test_model_output_shapes(name, kwargs, shape, out):
    model = models.get_model(name, **kwargs)
    x = fc.tensor(np.zeros((2,) + shape, np.float32))
    y = model(x)
    assert y.shape == (2,) + out and y.dtype == np.float32


def test_parameter_counts():
    # LeNet-5: 156 + 2,416 + 48,120 + 10,164 + 850 (see test_summary for the breakdown)
    assert _n_params(models.lenet5()) == 61706
    assert _n_params(models.resnet20()) == 272474            # He et al.: 0.27 M
    assert _n_params(models.resnet18(1000)) == 11689512      # torchvision's resnet18
    with pytest.raises(ValueError):
        models.get_model("vgg")


def test_resnet18_torchvision_key_names():
    keys = list(models.resnet18(1000).state_dict())
    assert keys[:7] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                        "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv1.weight"]
    for k in ("layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
              "layer4.1.bn2.bias", "fc.weight", "fc.bias"):
        assert k in keys
    assert "layer1.0.downsample.0.weight" not in keys
    assert len(keys) == 122       # as torchvision.models.resnet18().state_dict()


def _torch_twin(name, kwargs):
    pytest.importorskip("torch")
    import nn_helpers as h
    return {"lenet5": h.torch_lenet5, "resnet20": h.torch_resnet20,
            "resnet18": h.torch_resnet18, "mobilenet_small": h.torch_mobilenet_small,
            "hourglass_autoencoder": h.torch_hourglass}[name](**kwargs)


@pytest.mark.parametrize("name,kwargs,shape", [
    ("lenet5", {}, (3, 1, 28, 28)),
    ("resnet20", {}, (2, 3, 16, 16)),
    ("resnet20", dict(in_channels=1), (2, 1, 28, 28)),
    ("resnet18", dict(num_classes=7, in_channels=1), (2, 1, 28, 28)),
    ("mobilenet_small", {}, (2, 3, 16, 16)),
    ("hourglass_autoencoder", dict(base=4), (2, 1, 13, 10)),
])
@pytest.mark.parametrize("train", [True, False])
def test_models_match_torch_twins(name, kwargs, shape, train):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from nn_helpers import compare_with_torch
    theirs = _torch_twin(name, kwargs)
    ours = models.get_model(name, **kwargs)
    if not train:   # give eval-mode BatchNorm non-trivial statistics first
        theirs.train()(torch.randn(*shape))
    x = np.random.default_rng(0).standard_normal(shape)
    compare_with_torch(ours, theirs, x, train=train)


def test_training_smoke_lenet5_synthetic_shapes():
    fc.manual_seed(0)
    model = models.lenet5()
    loader = DataLoader(SyntheticShapes(256, seed=0), batch_size=32, shuffle=True, seed=0)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    x_all, y_all = SyntheticShapes(256, seed=0).get_batch(range(256))

    def full_loss():
        with fc.no_grad():
            return float(criterion(model(x_all), y_all))

    start = full_loss()
    for _ in range(4):     # 32 steps of 32 images
        for x, y in loader:
            opt.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            opt.step()
    end = full_loss()
    assert np.isfinite(end) and end < 0.85 * start, (start, end)   # measured 2.30 -> 1.47


def _unfuse(model):
    """A no-op forward hook on every BatchNorm2d and ReLU: the fused pairs
    (fastconv.nn.layers.fused) then run as two ops."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.ReLU)):
            m.register_forward_hook(lambda mod, args, out: None)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_small", "hourglass_autoencoder"])
def test_fused_batch_norm_relu_changes_no_bit(name, rng, monkeypatch):
    """The models run their BatchNorm2d + ReLU pairs and the ReLU of their residual sums as
    one op; with the pairs run as two ops (hooks disable the fusion) the outputs, every
    parameter gradient and the running statistics after two training steps and an eval
    forward are bit for bit the same."""
    shape = (4, 1, 28, 28) if name == "hourglass_autoencoder" else (4, 3, 32, 32)
    x = rng.standard_normal(shape).astype(np.float32)
    runs, fused_calls = [], []
    plain = nn.BatchNorm2d._forward_relu

    def counted(self, input):
        fused_calls[-1] += 1
        return plain(self, input)

    monkeypatch.setattr(nn.BatchNorm2d, "_forward_relu", counted)
    sums = []
    plain_sum = fused_mod.add_relu

    def counted_sum(a, b):
        sums.append(len(fused_calls) - 1)       # the run: 0 fused, 1 unfused
        return plain_sum(a, b)

    monkeypatch.setattr(fused_mod, "add_relu", counted_sum)
    for fused in (True, False):
        fused_calls.append(0)
        fc.manual_seed(0)
        model = getattr(models, name)()
        if not fused:
            _unfuse(model)
        outs = []
        for _ in range(2):
            model.zero_grad()
            y = model(fc.Tensor(x))
            (y * y).sum().backward()
            outs.append(y.data)
        model.eval()
        outs.append(model(fc.Tensor(x)).data)
        outs += [p.grad for p in model.parameters()]
        outs += [b for _, b in model.named_buffers()]
        runs.append(outs)
    assert fused_calls[0] > 0 and fused_calls[1] == 0
    assert set(sums) == ({0} if name == "resnet20" else set())
    assert len(runs[0]) == len(runs[1])
    for a, e in zip(*runs):
        np.testing.assert_array_equal(a, e)


def test_sequential_fuses_only_plain_batch_norm_relu_pairs(rng):
    """A hook on either module keeps the pair unfused (the hook runs); a ReLU subclass or a
    ReLU that does not follow a BatchNorm2d runs as itself."""
    calls = []

    class MyReLU(nn.ReLU):
        def forward(self, input):
            calls.append("sub")
            return super().forward(input)

    x = fc.Tensor(rng.standard_normal((2, 3, 5, 5)).astype(np.float32))
    seq = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.ReLU(), nn.BatchNorm2d(3), MyReLU())
    seq[2].register_forward_hook(lambda m, a, o: calls.append("hook2"))
    y = seq(x)
    assert calls == ["hook2", "sub"]
    seq[1].register_forward_hook(lambda m, a, o: calls.append("hook1"))
    y2 = seq(x)
    assert calls == ["hook2", "sub", "hook1", "hook2", "sub"]
    np.testing.assert_array_equal(y.data >= 0, True)
    assert y2.shape == y.shape
