"""Whole networks, fastconv next to PyTorch: training steps, eval forwards (plain and
``fastconv.fuse``d), and peak memory while training.

The PyTorch models are twins of :mod:`fastconv.models` built from PyTorch's own layers, with
the same module tree and ``state_dict`` keys, so both libraries start from the same weights
and see the same batch. A training step is what ``fastconv train`` runs per batch:
``zero_grad``, forward, cross-entropy, ``backward``, SGD with momentum 0.9.

Peak memory (VmHWM, see :func:`_peak_rss_mb`) is a per-process high-water mark, so each
library trains in a fresh child process: ``python train_step.py LIB THREADS STEPS BATCH``,
run by path. This file therefore uses no relative imports and imports fastconv only inside
functions: the PyTorch child must hold PyTorch alone.
"""
import json
import os
import subprocess
import sys
from collections import OrderedDict

import numpy as np

# name: input (C, H, W) of the training-step table
MODELS = OrderedDict([("lenet5", (1, 28, 28)), ("resnet20", (3, 32, 32)),
                      ("mobilenet_small", (3, 32, 32))])
LR, MOMENTUM = 0.01, 0.9


# ------------------------------------------------------------------------ PyTorch twins
def torch_model(name):
    """PyTorch twin of ``fastconv.models.<name>()`` (default arguments, 10 classes)."""
    import torch
    import torch.nn as tnn

    if name == "lenet5":
        return tnn.Sequential(OrderedDict([
            ("conv1", tnn.Conv2d(1, 6, 5, padding=2)), ("relu1", tnn.ReLU()),
            ("pool1", tnn.MaxPool2d(2)),
            ("conv2", tnn.Conv2d(6, 16, 5)), ("relu2", tnn.ReLU()), ("pool2", tnn.MaxPool2d(2)),
            ("flatten", tnn.Flatten()),
            ("fc1", tnn.Linear(400, 120)), ("relu3", tnn.ReLU()),
            ("fc2", tnn.Linear(120, 84)), ("relu4", tnn.ReLU()), ("fc3", tnn.Linear(84, 10))]))

    def conv_bn(c_in, c_out, k, stride, groups=1):
        return (tnn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                tnn.BatchNorm2d(c_out))

    class BasicBlock(tnn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1, self.bn1 = conv_bn(c_in, c_out, 3, stride)
            self.relu = tnn.ReLU()
            self.conv2, self.bn2 = conv_bn(c_out, c_out, 3, 1)
            self.downsample = (tnn.Sequential(*conv_bn(c_in, c_out, 1, stride))
                               if stride != 1 or c_in != c_out else None)

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            if name == "resnet20":
                self.conv1, self.bn1 = conv_bn(3, 16, 3, 1)
                self.relu = tnn.ReLU()
                c_in = 16
                for i, c in enumerate((16, 32, 64)):
                    blocks = [BasicBlock(c_in if b == 0 else c, c, 2 if b == 0 and i else 1)
                              for b in range(3)]
                    setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
                    c_in = c
            elif name == "mobilenet_small":
                self.conv1, self.bn1 = conv_bn(3, 32, 3, 1)
                self.relu = tnn.ReLU()
                blocks, c_in = [], 32
                for c, s in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)):
                    dw, bn1 = conv_bn(c_in, c_in, 3, s, groups=c_in)
                    pw, bn2 = conv_bn(c_in, c, 1, 1)
                    blocks.append(tnn.Sequential(OrderedDict([
                        ("depthwise", dw), ("bn1", bn1), ("relu1", tnn.ReLU()),
                        ("pointwise", pw), ("bn2", bn2), ("relu2", tnn.ReLU())])))
                    c_in = c
                self.blocks = tnn.Sequential(*blocks)
            else:
                raise ValueError(f"no PyTorch twin for {name!r}; expected one of "
                                 f"{list(MODELS)}")
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(c_in, 10)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            if name == "resnet20":
                x = self.layer3(self.layer2(self.layer1(x)))
            else:
                x = self.blocks(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return Net()


def load_fastconv_state(tmodel, state):
    """Load a fastconv ``state_dict`` (NumPy arrays) into a twin; keys must match."""
    import torch
    tmodel.load_state_dict(OrderedDict((k, torch.from_numpy(np.array(v)))
                                       for k, v in state.items()), strict=True)
    return tmodel


# ------------------------------------------------------------------------ model pairs
class ModelPair:
    """A fastconv model, its twin with the same weights, and one batch for both."""

    def __init__(self, name, torch, batch=64, seed=0):
        import fastconv as fc
        fc.manual_seed(seed)
        torch.manual_seed(seed)
        self.name, self.batch = name, batch
        self.model = fc.models.get_model(name)
        self.tmodel = load_fastconv_state(torch_model(name), self.model.state_dict())
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((batch,) + MODELS[name]).astype(np.float32)
        self.y = rng.integers(0, 10, batch)
        self.tx, self.ty = torch.from_numpy(self.x), torch.from_numpy(self.y)

    def macs_per_image(self):
        """Multiply-accumulates of the convolutions and linear layers for one image."""
        import fastconv as fc
        s = fc.summary(self.model, MODELS[self.name], print_fn=None)
        return sum(r["macs"] for r in s.layers if r["type"] in ("Conv2d", "Linear"))


class TrainPair(ModelPair):
    """Training steps. ``flops``: 6 x MACs per image (forward, input gradient and weight
    gradient cost one forward each), a slight over-count since the first layer needs no
    input gradient; used only for the fraction-of-peak column."""

    def __init__(self, name, torch, batch=64, seed=0):
        import fastconv as fc
        super().__init__(name, torch, batch, seed)
        self.model.train()
        self.tmodel.train()
        self.opt = fc.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = fc.nn.CrossEntropyLoss()
        self.topt = torch.optim.SGD(self.tmodel.parameters(), lr=LR, momentum=MOMENTUM)
        self.tloss = torch.nn.CrossEntropyLoss()
        self.xt = fc.tensor(self.x)
        self.flops = 6 * self.macs_per_image() * batch

    def fc_step(self):
        self.opt.zero_grad()
        loss = self.loss(self.model(self.xt), self.y)
        loss.backward()
        self.opt.step()
        return loss.item()

    def torch_step(self):
        self.topt.zero_grad()
        loss = self.tloss(self.tmodel(self.tx), self.ty)
        loss.backward()
        self.topt.step()
        return loss.item()


class EvalPair(ModelPair):
    """Eval-mode forward without autograd: fastconv as built, fastconv after
    ``fastconv.fuse``, and the PyTorch twin (unfused, as eager PyTorch runs it)."""

    def __init__(self, name, torch, batch=64, seed=0):
        import fastconv as fc
        super().__init__(name, torch, batch, seed)
        self.torch = torch
        self.model.eval()
        self.tmodel.eval()
        self.fused = fc.fuse(self.model)
        self.xt = fc.tensor(self.x)
        self.flops = 2 * self.macs_per_image() * batch

    def fc_forward(self):
        import fastconv as fc
        with fc.no_grad():
            return self.model(self.xt).data

    def fc_fused_forward(self):
        import fastconv as fc
        with fc.no_grad():
            return self.fused(self.xt).data

    def torch_forward(self):
        with self.torch.no_grad():
            return self.tmodel(self.tx).numpy()


# ------------------------------------------------------------------------ peak memory
def peak_memory(lib, threads, model="resnet20", batch=64, steps=3, timeout=600):
    """Train ``model`` for ``steps`` steps in a fresh process of ``lib`` ("fastconv" or
    "torch"); returns the child's report: ``peak_mb`` (peak RSS), ``import_mb`` (the same
    after importing the library, before building anything) and the last loss."""
    import fastconv
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, os.path.abspath(__file__), lib, model, str(threads), str(steps),
           str(batch)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"peak-memory child for {lib} failed ({proc.returncode}):\n"
                           f"{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _peak_rss_mb():
    """Peak resident memory of this process so far, in MiB.

    On Linux this is VmHWM, the high-water mark of this process's own address space. Not
    ru_maxrss there: execve carries the old address space's peak into it, and the child is
    spawned from the benchmark process (vfork shares its memory until exec), so ru_maxrss
    would report at least the parent's peak (measured: 238 MB for both libraries when the
    parent held 238 MB, against 40 MB after importing fastconv in a small parent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource
    scale = 1024 ** 2 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _child(lib, model, threads, steps, batch):
    shape = (batch,) + MODELS[model]
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)
        import_mb = _peak_rss_mb()
        net = torch_model(model).train()
        opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
        loss_fn = torch.nn.CrossEntropyLoss()
        x, y = torch.randn(shape), torch.randint(0, 10, (batch,))
    elif lib == "fastconv":
        import fastconv as fc
        fc.set_num_threads(threads)
        import_mb = _peak_rss_mb()
        net = fc.models.get_model(model).train()
        opt = fc.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
        loss_fn = fc.nn.CrossEntropyLoss()
        rng = np.random.default_rng(0)
        x = fc.tensor(rng.standard_normal(shape).astype(np.float32))
        y = rng.integers(0, 10, batch)
    else:
        raise SystemExit(f"expected fastconv or torch, got {lib!r}")
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    print(json.dumps({"lib": lib, "model": model, "batch": batch, "threads": threads,
                      "steps": steps, "import_mb": import_mb, "peak_mb": _peak_rss_mb(),
                      "loss": float(loss.item())}))


if __name__ == "__main__":
    # Run by path: drop this directory from the import path so that bench's own module
    # names (conv, ops, gemm) cannot shadow anything the libraries import.
    sys.path.pop(0)
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
