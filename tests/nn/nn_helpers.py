"""Helpers for the fastconv.nn tests: run a fastconv module and its PyTorch twin on the same
float64 input with the same weights and compare outputs, gradients and buffers.

Import after ``pytest.importorskip("torch")`` in torch tests; the torch model builders
(``torch_lenet5`` ...) mirror fastconv.models with PyTorch's own layers.
"""
from collections import OrderedDict

import numpy as np

import fastconv as fc
from fctest import assert_close

TOL = 1e-10


def torch_state_to_numpy(tmodule):
    return OrderedDict((k, v.detach().cpu().numpy().copy())
                       for k, v in tmodule.state_dict().items())


def compare_with_torch(ours, theirs, x, train=False, target=None, tol=TOL, extra_args=()):
    """Load ``theirs``' weights into ``ours`` (both float64), run both on ``x``, backprop a
    random cotangent (or the loss against ``target``), and compare everything."""
    import torch

    theirs = theirs.double()
    ours.double()
    assert list(ours.state_dict()) == list(theirs.state_dict()), "state_dict keys differ"
    result = ours.load_state_dict(torch_state_to_numpy(theirs))
    assert result.missing_keys == [] and result.unexpected_keys == []
    ours.train(train)
    theirs.train(train)
    x = np.asarray(x, dtype=np.float64)
    xt = torch.tensor(x, requires_grad=True)
    xo = fc.tensor(x, requires_grad=True)
    yt = theirs(xt, *extra_args)
    yo = ours(xo, *extra_args)
    assert_close(yo.data, yt.detach().numpy(), tol=tol, what="output")
    cot = np.random.default_rng(7).standard_normal(yt.shape)
    (yt * torch.tensor(cot)).sum().backward()
    yo.backward(cot)
    assert_close(xo.grad, xt.grad.numpy(), tol=tol, what="input grad")
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        tp = tparams[name]
        assert_close(p.grad, tp.grad.numpy(), tol=tol, what=f"grad of {name}")
    tstate = torch_state_to_numpy(theirs)
    for name, value in ours.state_dict().items():
        assert value.dtype == tstate[name].dtype, name
        assert_close(value, tstate[name], tol=tol, what=f"state {name}")
    return yo, yt


# ------------------------------------------------------------------ torch twins
def torch_lenet5(num_classes=10, in_channels=1):
    import torch.nn as tnn
    return tnn.Sequential(OrderedDict([
        ("conv1", tnn.Conv2d(in_channels, 6, 5, padding=2)), ("relu1", tnn.ReLU()),
        ("pool1", tnn.MaxPool2d(2)),
        ("conv2", tnn.Conv2d(6, 16, 5)), ("relu2", tnn.ReLU()), ("pool2", tnn.MaxPool2d(2)),
        ("flatten", tnn.Flatten()),
        ("fc1", tnn.Linear(400, 120)), ("relu3", tnn.ReLU()),
        ("fc2", tnn.Linear(120, 84)), ("relu4", tnn.ReLU()),
        ("fc3", tnn.Linear(84, num_classes)),
    ]))


def _torch_classes():
    import torch
    import torch.nn as tnn

    class TBasicBlock(tnn.Module):
        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or in_planes != planes:
                self.downsample = tnn.Sequential(
                    tnn.Conv2d(in_planes, planes, 1, stride, bias=False),
                    tnn.BatchNorm2d(planes))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class TResNet(tnn.Module):
        """torchvision's resnet18 layout (imagenet stem) or the CIFAR resnet20 layout."""

        def __init__(self, layers, widths, num_classes, in_channels, stem):
            super().__init__()
            if stem == "imagenet":
                self.conv1 = tnn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            else:
                self.conv1 = tnn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(widths[0])
            self.relu = tnn.ReLU()
            if stem == "imagenet":
                self.maxpool = tnn.MaxPool2d(3, 2, 1)
            self.n = len(layers)
            in_planes = widths[0]
            for i, (blocks, planes) in enumerate(zip(layers, widths)):
                mods = []
                for b in range(blocks):
                    mods.append(TBasicBlock(in_planes, planes, (1 if i == 0 else 2)
                                            if b == 0 else 1))
                    in_planes = planes
                setattr(self, f"layer{i + 1}", tnn.Sequential(*mods))
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(in_planes, num_classes)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            if hasattr(self, "maxpool"):
                x = self.maxpool(x)
            for i in range(self.n):
                x = getattr(self, f"layer{i + 1}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class TMobileNet(tnn.Module):
        def __init__(self, num_classes=10, in_channels=3):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_channels, 32, 3, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(32)
            self.relu = tnn.ReLU()
            blocks, c = [], 32
            for out, s in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)):
                blocks.append(tnn.Sequential(OrderedDict([
                    ("depthwise", tnn.Conv2d(c, c, 3, s, 1, groups=c, bias=False)),
                    ("bn1", tnn.BatchNorm2d(c)), ("relu1", tnn.ReLU()),
                    ("pointwise", tnn.Conv2d(c, out, 1, bias=False)),
                    ("bn2", tnn.BatchNorm2d(out)), ("relu2", tnn.ReLU())])))
                c = out
            self.blocks = tnn.Sequential(*blocks)
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(c, num_classes)

        def forward(self, x):
            x = self.blocks(self.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    def cbr(ci, co, s=1):
        return tnn.Sequential(OrderedDict([
            ("conv", tnn.Conv2d(ci, co, 3, s, 1, bias=False)), ("bn", tnn.BatchNorm2d(co)),
            ("relu", tnn.ReLU())]))

    class THourglass(tnn.Module):
        def __init__(self, in_channels=1, base=16):
            super().__init__()
            b = base
            self.enc0 = cbr(in_channels, b)
            self.pool = tnn.MaxPool2d(2, ceil_mode=True)
            self.enc1 = cbr(b, 2 * b)
            self.enc2 = cbr(2 * b, 4 * b, 2)
            self.mid = cbr(4 * b, 4 * b)
            self.up1 = tnn.ConvTranspose2d(4 * b, 2 * b, 3, 2, 1)
            self.dec1 = cbr(2 * b, 2 * b)
            self.up0 = tnn.ConvTranspose2d(2 * b, b, 3, 2, 1)
            self.dec0 = cbr(b, b)
            self.head = tnn.Conv2d(b, in_channels, 1)

        def forward(self, x):
            e0 = self.enc0(x)
            e1 = self.enc1(self.pool(e0))
            m = self.mid(self.enc2(e1))
            d1 = self.dec1(self.up1(m, output_size=e1.shape[-2:]) + e1)
            d0 = self.dec0(self.up0(d1, output_size=e0.shape[-2:]) + e0)
            return self.head(d0)

    return TResNet, TMobileNet, THourglass


def torch_resnet18(num_classes, in_channels=3):
    TResNet, _, _ = _torch_classes()
    return TResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels, "imagenet")


def torch_resnet20(num_classes=10, in_channels=3):
    TResNet, _, _ = _torch_classes()
    return TResNet((3, 3, 3), (16, 32, 64), num_classes, in_channels, "cifar")


def torch_mobilenet_small(num_classes=10, in_channels=3):
    return _torch_classes()[1](num_classes, in_channels)


def torch_hourglass(in_channels=1, base=16):
    return _torch_classes()[2](in_channels, base)
