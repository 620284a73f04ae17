"""Threads: kernels called from 4 Python threads at once (they release the GIL) give exactly
the serial results; ``fc.set_num_threads`` changed by another thread while calls are in
flight corrupts none of them; and a kernel call never has more threads running than
requested (no OpenMP x BLAS oversubscription), measured from the thread states in
/proc/self/task/*/stat.
"""
import json
import os
import sys
import threading

import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F
from fctest import run_python


def _rand(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _conv(alg, groups=1, cin=4, cout=6):
    def call(s):
        x, w = _rand(s, 3, cin, 11, 9), _rand(s + 1, cout, cin // groups, 3, 3)
        return F.conv2d, (x, w, _rand(s + 2, cout)), dict(padding=1, groups=groups,
                                                           algorithm=alg)
    return call


CALLS = {f"conv2d-{alg}": _conv(alg) for alg in fc.conv_algorithms() if alg != "depthwise"}
CALLS.update({
    "conv2d-depthwise": _conv("depthwise", groups=4, cin=4, cout=8),
    "conv_transpose2d": lambda s: (F.conv_transpose2d, (_rand(s, 3, 4, 6, 5),
                                                        _rand(s + 1, 4, 3, 3, 3)),
                                   dict(stride=2, padding=1, output_padding=1)),
    "max_pool2d": lambda s: (F.max_pool2d, (_rand(s, 3, 4, 11, 9),), dict(kernel_size=3,
                                                                          stride=2, padding=1)),
    "avg_pool2d": lambda s: (F.avg_pool2d, (_rand(s, 3, 4, 11, 9),), dict(kernel_size=2)),
    "adaptive_avg_pool2d": lambda s: (F.adaptive_avg_pool2d, (_rand(s, 3, 4, 11, 9),),
                                      dict(output_size=(3, 2))),
    "adaptive_max_pool2d": lambda s: (F.adaptive_max_pool2d, (_rand(s, 3, 4, 11, 9),),
                                      dict(output_size=3)),
    "lp_pool2d": lambda s: (F.lp_pool2d, (np.abs(_rand(s, 3, 4, 11, 9)),),
                            dict(norm_type=2, kernel_size=2)),
    "batch_norm": lambda s: (F.batch_norm, (_rand(s, 5, 4, 6, 6), None, None, _rand(s + 1, 4),
                                            _rand(s + 2, 4)), dict(training=True)),
    "relu": lambda s: (F.relu, (_rand(s, 3, 4, 11, 9),), {}),
    "sigmoid": lambda s: (F.sigmoid, (_rand(s, 3, 4, 11, 9),), {}),
    "tanh": lambda s: (F.tanh, (_rand(s, 3, 4, 11, 9),), {}),
    "elu": lambda s: (F.elu, (_rand(s, 3, 4, 11, 9),), {}),
    "leaky_relu": lambda s: (F.leaky_relu, (_rand(s, 3, 4, 11, 9),), {}),
    "prelu": lambda s: (F.prelu, (_rand(s, 3, 4, 11, 9), _rand(s + 1, 4)), {}),
    "linear": lambda s: (F.linear, (_rand(s, 7, 40), _rand(s + 1, 9, 40), _rand(s + 2, 9)), {}),
    "interpolate": lambda s: (F.interpolate, (_rand(s, 3, 4, 7, 5),),
                              dict(scale_factor=2, mode="bilinear")),
    "pixel_shuffle": lambda s: (F.pixel_shuffle, (_rand(s, 3, 8, 5, 5),),
                                dict(upscale_factor=2)),
    "softmax": lambda s: (F.softmax, (_rand(s, 3, 4, 11, 9),), dict(dim=1)),
})


def run_call(name, seed):
    """Forward and backward of one kernel op; every output and gradient, as ndarrays."""
    fn, args, kwargs = CALLS[name](seed)
    tensors = [fc.Tensor(a, requires_grad=True) if a is not None else None for a in args]
    y = fn(*tensors, **kwargs)
    y = y[0] if isinstance(y, tuple) else y
    y.backward(_rand(seed + 7, *y.shape))
    return [y.data] + [t.grad for t in tensors if t is not None]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = fc.get_num_threads()
    yield
    fc.set_num_threads(threads)


def _serial(seeds):
    fc.set_num_threads(2)
    return {(n, s): run_call(n, s) for n in CALLS for s in seeds}


def _hammer(expected, workers, rounds, chaos=False):
    """Run every call in ``expected`` from ``workers`` threads, each in its own order;
    optionally another thread keeps changing the thread count. Returns the mismatches."""
    keys = list(expected)
    bad, errors = [], []
    stop = threading.Event()
    start = threading.Barrier(workers + chaos)

    def work(t):
        try:
            start.wait()
            order = np.random.default_rng(t).permutation(len(keys))
            for _ in range(rounds):
                for i in order:
                    got = run_call(*keys[i])
                    if not all(np.array_equal(g, w) for g, w in zip(got, expected[keys[i]])):
                        bad.append((t, keys[i]))
        except BaseException as exc:  # noqa: B902 - reported by the assertion below
            errors.append(exc)

    def meddle():
        start.wait()
        rng = np.random.default_rng(99)
        while not stop.is_set():
            fc.set_num_threads(int(rng.integers(1, 5)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(workers)]
    if chaos:
        changer = threading.Thread(target=meddle)
        changer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    if chaos:
        changer.join()
    assert not errors, errors
    return bad


def test_four_threads_give_the_serial_results():
    expected = _serial(seeds=(1, 2))
    assert _hammer(expected, workers=4, rounds=2) == []


def test_set_num_threads_from_another_thread_corrupts_nothing():
    expected = _serial(seeds=(3,))
    assert _hammer(expected, workers=3, rounds=3, chaos=True) == []


_SAMPLER = r"""
import json, os, sys, threading, time
from collections import Counter
import numpy as np
import fastconv as fc
from fastconv import nn
from fastconv.optim import SGD

def running(exclude):
    # threads of this process in state R (running or runnable), the sampler excluded
    n = 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) == exclude:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        n += stat[stat.rindex(")") + 2] == "R"
    return n

fc.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.DepthwiseSeparableConv2d(16, 32, 3, padding=1), nn.MaxPool2d(2),
                      nn.ConvTranspose2d(32, 8, 2, stride=2), nn.AdaptiveAvgPool2d(4),
                      nn.Flatten(), nn.Linear(128, 10))
opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
rng = np.random.default_rng(0)
x = fc.tensor(rng.standard_normal((16, 3, 32, 32)).astype(np.float32))
y = rng.integers(0, 10, 16)

def step():
    opt.zero_grad()
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    opt.step()

def settle(timeout=10.0):
    # NumPy's OpenBLAS workers start (at import) and end each call spinning for a while
    # before they sleep; wait until only this thread runs, so that the samples below see the
    # steps' own threads (a BLAS thread spinning during a step still counts)
    t0 = time.time()
    while running(threading.get_native_id()) > 0 and time.time() - t0 < timeout:
        time.sleep(0.01)

out = {}
for n in (1, 2):
    fc.set_num_threads(n)
    step()
    settle()
    counts, stop = Counter(), threading.Event()
    def sample():
        me = threading.get_native_id()
        while not stop.is_set():
            counts[running(me)] += 1
    sampler = threading.Thread(target=sample)
    sampler.start()
    for _ in range(int(sys.argv[1])):
        step()
    stop.set()
    sampler.join()
    out[n] = {"hist": dict(counts), "tasks": len(os.listdir("/proc/self/task"))}
print(json.dumps(out))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_running_threads_never_exceed_the_requested_count():
    """A training step (conv, depthwise, transposed conv, BatchNorm, pooling, GEMM) in a
    fresh process, at 1 and 2 threads, with a sampler thread counting the threads in state R
    (running or runnable); oversubscription (OpenMP teams inside BLAS threads, or BLAS
    threads spinning beside a kernel) would show more. Sampling starts once NumPy's BLAS
    workers have stopped the spinning they start with (a CI run once caught it)."""
    r = run_python(["-c", _SAMPLER, "8"], timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    for n, info in result.items():
        hist = {int(k): v for k, v in info["hist"].items()}
        assert sum(hist.values()) >= 50, hist          # the sampler saw the step run
        assert sum(v for k, v in hist.items() if k >= 1) > 0, hist
        assert max(hist) <= int(n), f"{n} thread(s) requested, running: {hist}"
    print(result, file=sys.stderr)
