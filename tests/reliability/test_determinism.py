"""Determinism of training: the same seed and thread count give bit-identical losses and
weights (also in a fresh process); other thread counts give the same run within float32
tolerance, and in fact bit for bit, as the README states (parallel loops only split work whose
writes are disjoint; reductions run in a fixed order)."""
import json
import os

import numpy as np
import pytest

import fastconv as fc
from fctest import run_python

STEPS = 12

_TRAIN = r"""
import hashlib, json, sys
import numpy as np
import fastconv as fc
from fastconv import nn
from fastconv.data import DataLoader, SyntheticShapes
from fastconv.data import transforms as T
from fastconv.optim import SGD


def train(threads, seed, steps):
    fc.set_num_threads(threads)
    fc.manual_seed(seed)
    data = SyntheticShapes(96, size=16, seed=seed, transform=T.Compose(
        [T.RandomCrop(16, padding=2), T.RandomHorizontalFlip()]))
    loader = DataLoader(data, batch_size=8, shuffle=True, seed=seed)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.DepthwiseSeparableConv2d(8, 12, 3, padding=1), nn.PReLU(12), nn.MaxPool2d(2),
        nn.ConvTranspose2d(12, 6, 2, stride=2), nn.ELU(), nn.AvgPool2d(2), nn.Dropout(0.2),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 10))
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    losses = []
    while len(losses) < steps:
        for x, y in loader:
            opt.zero_grad()
            loss = nn.CrossEntropyLoss(label_smoothing=0.1)(model(x), y)
            loss.backward()
            opt.step()
            losses.append(float(loss.data))
            if len(losses) == steps:
                break
    state = model.state_dict()
    digest = hashlib.sha256(b"".join(state[k].tobytes() for k in sorted(state))).hexdigest()
    return losses, state, digest


if __name__ == "__main__":
    losses, _, digest = train(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    print(json.dumps({"losses": losses, "digest": digest}))
"""

_ns = {}
exec(compile(_TRAIN, "train_script", "exec"), _ns)
train = _ns["train"]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = fc.get_num_threads()
    yield
    fc.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs():
    return {threads: train(threads, seed=5, steps=STEPS) for threads in (1, 2, 3)}


@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_and_threads_is_bit_identical(runs, threads):
    losses, state, digest = train(threads, seed=5, steps=STEPS)
    ref_losses, ref_state, ref_digest = runs[threads]
    assert losses == ref_losses
    for key in ref_state:
        assert state[key].tobytes() == ref_state[key].tobytes(), key
    assert digest == ref_digest


def test_another_seed_gives_another_run(runs):
    """The positive control: the comparison above can tell runs apart."""
    losses, _, digest = train(2, seed=6, steps=STEPS)
    assert losses != runs[2][0] and digest != runs[2][2]


def test_other_thread_counts_agree(runs):
    ref_losses, ref_state, _ = runs[1]
    for threads in (2, 3):
        losses, state, digest = runs[threads]
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)       # the contract
        for key in ref_state:
            np.testing.assert_allclose(state[key], ref_state[key], rtol=1e-4, atol=1e-5,
                                       err_msg=key)
        assert losses == ref_losses and digest == runs[1][2]           # what the README says


def test_a_fresh_process_repeats_the_run(runs):
    """No hidden state (hash seeds, allocation addresses, import order) leaks in."""
    r = run_python(["-c", _TRAIN, "2", "5", str(STEPS)],
                   env=dict(os.environ, PYTHONHASHSEED="123"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["losses"] == runs[2][0]
    assert out["digest"] == runs[2][2]
