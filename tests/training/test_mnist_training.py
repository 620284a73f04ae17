"""Real data: LeNet-5 learns MNIST from the original files (skipped when they are absent)."""
import json
import time

import pytest

import fastconv as fc
from fastconv.cli import main
from fastconv.data import DataLoader
from fastconv.optim import SGD
from fastconv.optim.lr_scheduler import OneCycleLR
from fastconv.training import Reporter, fit
from fastconv.training.recipes import build_datasets, build_model

STEPS, BATCH = 300, 64


def test_lenet5_mnist_300_steps(mnist_dir):
    """300 steps of batch 64 (19,200 images, a third of an epoch), SGD with momentum and a
    one-cycle schedule peaking at 0.05, then the first 2000 test images (harder than the
    rest of the test set): measured 96.0% (96.1% with 2 threads), asserted >= 93%."""
    fc.set_num_threads(1)  # see the small_args fixture
    fc.manual_seed(0)
    train, _, test = build_datasets("mnist", mnist_dir, limit_train=STEPS * BATCH,
                                    limit_test=2000)
    model = build_model("lenet5", "mnist")
    start = time.perf_counter()
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    trainer = fit(model, opt, DataLoader(train, batch_size=BATCH, shuffle=True, seed=0),
                  epochs=1, scheduler=OneCycleLR(opt, max_lr=0.05, total_steps=STEPS),
                  scheduler_interval="batch",
                  test_loader=DataLoader(test, batch_size=500),
                  reporter=Reporter(quiet=True))
    seconds = time.perf_counter() - start
    record = trainer.history[0]
    print(f"MNIST {STEPS} steps: test accuracy {100 * record['test_accuracy']:.2f}% "
          f"in {seconds:.1f} s ({record['images_per_s']:.0f} img/s)")
    assert record["test_accuracy"] >= 0.93


@pytest.mark.slow
def test_lenet5_mnist_reaches_99(mnist_dir, tmp_path, capsys):
    """The bar of issue 4: `fastconv train --model lenet5 --dataset mnist` >= 99.0%.

    Measured (2 threads, shared machine): 99.15% after 10 epochs, 99.0% first reached at
    epoch 7; 356 s, 1750 img/s. (8 epochs without weight decay end at exactly 99.00%.)"""
    log = tmp_path / "mnist.json"
    code = main(["train", "--model", "lenet5", "--dataset", "mnist", "--data-dir",
                 str(mnist_dir), "--epochs", "10", "--weight-decay", "5e-4", "--threads", "2",
                 "--quiet", "--log", str(log)])
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads(log.read_text())
    print(out)
    assert doc["totals"]["final"]["test_accuracy"] >= 0.990
