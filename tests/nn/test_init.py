"""Default initialisation (PyTorch's) and fastconv.nn.init, all seeded by fc.manual_seed."""
import math

import numpy as np
import pytest

import fastconv as fc
from fastconv import models, nn
from fastconv.nn import init


def _within(a, bound):
    a = np.asarray(a)
    assert np.all(np.abs(a) <= bound * (1 + 1e-6))
    if a.size >= 100:   # a uniform sample of this size spreads over most of the interval
        assert a.max() > 0.8 * bound and a.min() < -0.8 * bound


def test_conv_and_linear_default_bounds():
    fc.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, groups=2)
    fan_in = 4 * 9
    _within(conv.weight.data, 1 / math.sqrt(fan_in))
    _within(conv.bias.data, 1 / math.sqrt(fan_in))
    lin = nn.Linear(50, 40)
    _within(lin.weight.data, 1 / math.sqrt(50))
    _within(lin.bias.data, 1 / math.sqrt(50))
    assert conv.weight.dtype == np.float32 and lin.weight.dtype == np.float32


def test_conv_transpose_fan_in_from_weight_shape_1():
    fc.manual_seed(0)
    convt = nn.ConvTranspose2d(6, 20, 3, groups=2)   # weight (6, 10, 3, 3): fan_in 90
    assert convt.weight.shape == (6, 10, 3, 3)
    _within(convt.weight.data, 1 / math.sqrt(90))
    _within(convt.bias.data, 1 / math.sqrt(90))


def test_depthwise_separable_and_bn_prelu_defaults():
    ds = nn.DepthwiseSeparableConv2d(4, 8, 3)
    _within(ds.depthwise.weight.data, 1 / 3)       # fan_in 1 * 3 * 3
    _within(ds.pointwise.weight.data, 1 / 2)       # fan_in 4
    bn = nn.BatchNorm2d(5)
    assert np.all(bn.weight.data == 1) and np.all(bn.bias.data == 0)


def test_seeded_init_is_reproducible():
    fc.manual_seed(42)
    a = models.lenet5().state_dict()
    fc.manual_seed(42)
    b = models.lenet5().state_dict()
    fc.manual_seed(43)
    c = models.lenet5().state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.weight"], c["conv1.weight"])


def test_init_functions():
    fc.manual_seed(0)
    w = nn.Parameter(np.empty((200, 100, 3, 3), np.float32))
    fan_in, fan_out = 900, 1800
    init.kaiming_uniform_(w)            # leaky_relu gain with a=0: sqrt(2)
    _within(w.data, math.sqrt(2) * math.sqrt(3 / fan_in))
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(w.data.std() - math.sqrt(2 / fan_out)) < 0.01 * math.sqrt(2 / fan_out)
    assert abs(w.data.mean()) < 1e-3
    init.xavier_uniform_(w, gain=2.0)
    _within(w.data, 2.0 * math.sqrt(6 / (fan_in + fan_out)))
    init.xavier_normal_(w)
    assert abs(w.data.std() - math.sqrt(2 / (fan_in + fan_out))) < 1e-3
    init.uniform_(w, -0.5, 2.0)
    assert w.data.min() >= -0.5 and w.data.max() <= 2.0 and abs(w.data.mean() - 0.75) < 0.01
    init.normal_(w, 3.0, 0.5)
    assert abs(w.data.mean() - 3) < 0.01 and abs(w.data.std() - 0.5) < 0.01
    assert init.zeros_(w) is w and np.all(w.data == 0)
    assert np.all(init.ones_(w).data == 1)
    assert np.all(init.constant_(w, 0.3).data == np.float32(0.3))
    assert w.dtype == np.float32
    arr = np.empty((4, 5))
    assert init.ones_(arr) is arr and np.all(arr == 1)
    with pytest.raises(ValueError, match="fewer than 2"):
        init.kaiming_uniform_(np.empty(3))
    with pytest.raises(ValueError):
        init.calculate_gain("foo")
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))


def test_init_matches_torch_distribution_parameters():
    torch = pytest.importorskip("torch")
    for ours, theirs in ((nn.Conv2d(6, 4, (3, 5)), torch.nn.Conv2d(6, 4, (3, 5))),
                         (nn.ConvTranspose2d(6, 4, 3), torch.nn.ConvTranspose2d(6, 4, 3)),
                         (nn.Linear(7, 3), torch.nn.Linear(7, 3))):
        fan_in = torch.nn.init._calculate_fan_in_and_fan_out(theirs.weight)[0]
        assert fan_in == init._calculate_fan_in_and_fan_out(ours.weight)[0]
        assert np.abs(ours.weight.data).max() <= 1 / math.sqrt(fan_in)
