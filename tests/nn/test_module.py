"""Module mechanics: registration, traversal, state_dict/load_state_dict, dtype casts,
train/eval, freezing, hooks, repr and the containers."""
from collections import OrderedDict

import numpy as np
import pytest

import fastconv as fc
from fastconv import models, nn
from fastconv.optim import SGD


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
        self.scale = nn.Parameter(np.ones(1, np.float32))
        self.register_buffer("steps", np.zeros((), np.int64))
        self.register_buffer("scratch", np.zeros(2, np.float32), persistent=False)
        self.plain = 3

    def forward(self, x):
        x = nn.ReLU()(self.bn(self.conv(x)))
        return self.head(x) * self.scale


def _x(n=2):
    return fc.tensor(np.random.default_rng(0).standard_normal((n, 1, 6, 6)).astype(np.float32))


def test_registration_and_traversal():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "scale", "conv.weight", "conv.bias", "bn.weight", "bn.bias", "head.1.weight",
        "head.1.bias"]
    assert [n for n, _ in net.named_buffers()] == [
        "steps", "scratch", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert [n for n, _ in net.named_children()] == ["conv", "bn", "head"]
    assert [n for n, _ in net.named_modules()] == ["", "conv", "bn", "head", "head.0",
                                                    "head.1"]
    assert len(list(net.parameters(recurse=False))) == 1
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert net.plain == 3 and "plain" not in net._parameters
    with pytest.raises(AttributeError):
        net.missing
    with pytest.raises(TypeError):
        net.conv = 5          # a child can only be replaced by a Module or None
    with pytest.raises(TypeError):
        net.scale = np.ones(1)  # a parameter can only be replaced by a Parameter or None
    with pytest.raises(KeyError):
        net.register_parameter("a.b", nn.Parameter(np.ones(1)))
    del net.scale
    assert "scale" not in dict(net.named_parameters())


def test_shared_parameters_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, lin)
    assert len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_state_dict_is_copies_with_pytorch_names():
    net = Net()
    sd = net.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd) == ["scale", "steps", "conv.weight", "conv.bias", "bn.weight", "bn.bias",
                        "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
                        "head.1.weight", "head.1.bias"]
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    sd["conv.weight"][...] = 7
    assert not np.any(net.conv.weight.data == 7)
    assert sd["bn.num_batches_tracked"].dtype == np.int64


def test_load_state_dict_round_trip_and_casts():
    a, b = Net(), Net()
    sd = a.state_dict()
    sd64 = {k: (fc.tensor(v.astype(np.float64)) if v.dtype == np.float32 else v.tolist())
            for k, v in sd.items()}     # Tensors, float64 and plain lists all accepted
    weight = b.conv.weight
    result = b.load_state_dict(sd64)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b.conv.weight is weight and weight.dtype == np.float32
    for k, v in b.state_dict().items():
        assert np.array_equal(v, sd[k]) and v.dtype == sd[k].dtype, k


def test_load_state_dict_strict_errors_and_nonstrict():
    net = Net()
    sd = net.state_dict()
    before = net.conv.weight.data.copy()
    bad = dict(sd)
    del bad["conv.bias"]
    bad["extra.weight"] = np.zeros(1)
    bad["conv.weight"] = np.zeros_like(sd["conv.weight"]) + 5
    with pytest.raises(RuntimeError) as err:
        net.load_state_dict(bad)
    msg = str(err.value)
    assert 'Missing key(s) in state_dict: "conv.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    assert np.array_equal(net.conv.weight.data, before)     # nothing copied on error
    result = net.load_state_dict(bad, strict=False)
    assert result.missing_keys == ["conv.bias"] and result.unexpected_keys == ["extra.weight"]
    assert np.all(net.conv.weight.data == 5)
    wrong = dict(sd)
    wrong["head.1.weight"] = np.zeros((2, 2))
    for strict in (True, False):
        with pytest.raises(RuntimeError, match=r"size mismatch for head.1.weight.*\(2, 2\).*"
                                               r"\(3, 144\)"):
            net.load_state_dict(wrong, strict=strict)


def test_to_double_float_keep_parameter_identity():
    net = Net()
    params = list(net.parameters())
    opt = SGD(net.parameters(), lr=0.1)
    net.double()
    assert all(p is q for p, q in zip(params, net.parameters()))
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net.bn.running_mean.dtype == np.float64
    assert net.bn.num_batches_tracked.dtype == np.int64
    assert net.steps.dtype == np.int64
    x = fc.tensor(_x().data.astype(np.float64))
    net(x).sum().backward()
    w = net.conv.weight.data.copy()
    opt.step()       # the optimiser built before the cast still updates the parameters
    assert not np.array_equal(w, net.conv.weight.data)
    assert net.to(np.float32) is net and net.conv.weight.dtype == np.float32
    assert net.conv.weight.grad.dtype == np.float32
    assert net.to("float64").conv.weight.dtype == np.float64
    assert net.float().conv.weight.dtype == np.float32
    with pytest.raises(TypeError):
        net.to(np.int32)


def test_train_eval_switches_bn_and_dropout():
    net = nn.Sequential(nn.BatchNorm2d(1), nn.Dropout(0.5))
    assert net.training and all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    x = fc.tensor(np.random.default_rng(1).standard_normal((4, 1, 3, 3)).astype(np.float32))
    y1, y2 = net(x).data, net(x).data
    assert np.array_equal(y1, y2)                    # deterministic in eval
    assert np.allclose(y1, x.data / np.sqrt(1 + 1e-5), atol=1e-6)  # running stats 0 / 1
    assert net.train() is net and net[1].training
    fc.manual_seed(3)
    y = net(x).data
    assert np.any(y == 0)                            # dropout active
    assert int(net[0].num_batches_tracked) == 1


def test_freezing_no_grad_and_no_update():
    fc.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    net[0].requires_grad_(False)
    frozen = net[0].weight.data.copy()
    opt = SGD(net.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    x = _x()
    for _ in range(2):
        opt.zero_grad()
        nn.CrossEntropyLoss()(net(x), np.array([0, 2])).backward()
        assert net[0].weight.grad is None and net[0].bias.grad is None
        assert net[2].weight.grad is not None
        opt.step()
    assert np.array_equal(net[0].weight.data, frozen)


def test_finetune_only_last_layer():
    fc.manual_seed(1)
    model = models.lenet5()
    for p in model.parameters():
        p.requires_grad = False
    model.fc3 = nn.Linear(84, 4)          # new head, trainable
    before = {k: v for k, v in model.state_dict().items() if not k.startswith("fc3")}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 2
    opt = SGD(trainable, lr=0.1)
    x = fc.tensor(np.random.default_rng(2).random((8, 1, 28, 28)).astype(np.float32))
    y = np.arange(8) % 4
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    for k, v in model.state_dict().items():
        if k in before:
            assert np.array_equal(v, before[k]), k


def test_zero_grad_apply_requires_grad():
    net = Net()
    net(_x()).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    seen = []
    assert net.apply(lambda m: seen.append(type(m).__name__)) is net
    assert seen == ["Conv2d", "BatchNorm2d", "Flatten", "Linear", "Sequential", "Net"]
    assert net.requires_grad_(False) is net
    assert not any(p.requires_grad for p in net.parameters())


def test_forward_hooks_and_removal():
    lin = nn.Linear(2, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda m, inp: calls.append("pre"))
    h2 = lin.register_forward_hook(lambda m, inp, out: calls.append(("post", out.shape)))
    h3 = lin.register_forward_hook(lambda m, inp, out: out * 0)
    y = lin(fc.tensor(np.ones((1, 2), np.float32)))
    assert calls == ["pre", ("post", (1, 2))] and np.all(y.data == 0)
    for h in (h1, h2, h3):
        h.remove()
    y = lin(fc.tensor(np.ones((1, 2), np.float32)))
    assert len(calls) == 2 and np.any(y.data != 0)


def test_repr_like_pytorch():
    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(),
                        nn.Sequential(nn.Linear(3, 4, bias=False)))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Linear(in_features=3, out_features=4, bias=False)\n"
        "  )\n"
        ")")
    assert repr(nn.Parameter(np.zeros(1, np.float32))).startswith("Parameter containing:")


def test_sequential_and_modulelist():
    a, b, c = nn.ReLU(), nn.Tanh(), nn.Sigmoid()
    seq = nn.Sequential(a, b)
    seq.append(c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c and list(seq) == [a, b, c]
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c]
    named = nn.Sequential(OrderedDict(act=a, out=b))
    assert [n for n, _ in named.named_children()] == ["act", "out"] and named[1] is b
    with pytest.raises(IndexError):
        seq[3]
    ml = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    ml.append(nn.Linear(2, 1))
    assert len(ml) == 3 and [n for n, _ in ml.named_parameters()][-1] == "2.bias"
    owner = nn.Module()
    owner.layers = ml
    assert len(list(owner.parameters())) == 6
    with pytest.raises(NotImplementedError):
        ml(1)


def test_pytorch_state_dict_loads_into_equivalent_module():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                                 torch.nn.ReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(4 * 4 * 4, 3))
    ours = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3))
    theirs.train()(torch.randn(3, 1, 6, 6))   # non-trivial running statistics
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    assert list(state) == list(ours.state_dict())
    ours.load_state_dict(state)
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        want = theirs(torch.tensor(x)).numpy()
    assert np.allclose(ours(fc.tensor(x)).data, want, atol=1e-5)
