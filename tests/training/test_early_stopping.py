"""Early stopping on the validation loss: stops after `patience` epochs without improvement
and ends with the best epoch's weights."""
import json

import numpy as np
import pytest

import fastconv as fc
from fastconv.cli import main
from fastconv.data import DataLoader
from fastconv.optim import SGD
from fastconv.training import Reporter, Trainer, evaluate, load_checkpoint
from fastconv.training.recipes import build_datasets, build_model


def _setup():
    fc.manual_seed(0)
    train, val, test = build_datasets("synthetic", val_split=0.25, limit_train=128,
                                      limit_test=64)
    model = build_model("lenet5", "synthetic")
    # lr 0: training never changes the weights, so only what the test does to them moves
    # the validation loss.
    opt = SGD(model.parameters(), lr=0.0)
    loaders = (DataLoader(train, batch_size=32, shuffle=True, seed=0),
               DataLoader(val, batch_size=64), DataLoader(test, batch_size=64))
    return model, opt, loaders


def test_stops_after_patience_and_restores_best(tmp_path):
    model, opt, (train, val, test) = _setup()
    epoch1 = {}

    def spoil_weights_after_epoch_1(trainer, record):
        if record["epoch"] == 1:
            epoch1.update(trainer.model.state_dict())
            rng = np.random.default_rng(0)
            for p in trainer.model.parameters():
                p.data += rng.normal(0, 0.5, p.shape).astype(p.data.dtype)

    trainer = Trainer(model, opt, train, val_loader=val, test_loader=test, patience=2,
                      checkpoint=tmp_path / "c.npz", reporter=Reporter(quiet=True),
                      callbacks=[spoil_weights_after_epoch_1])
    history = trainer.fit(10)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["improved"] for r in history] == [True, False, False]
    assert trainer.stopped_early and trainer.best["epoch"] == 1
    for key, value in model.state_dict().items():  # the best (epoch 1) weights are back
        assert np.array_equal(value, epoch1[key]), key
    assert trainer.final["weights"] == "best"
    assert trainer.final["test_accuracy"] == history[0]["test_accuracy"]
    assert evaluate(model, val)["loss"] == pytest.approx(history[0]["val_loss"])
    saved = load_checkpoint(tmp_path / "c.npz")
    assert saved["stopped_early"] and saved["best"]["epoch"] == 1
    for key, value in saved["best_model"].items():
        assert np.array_equal(value, epoch1[key]), key
    # Resuming a run that stopped early trains no further.
    again = Trainer(model, opt, train, val_loader=val, patience=2,
                    reporter=Reporter(quiet=True))
    again.resume(tmp_path / "c.npz")
    assert len(again.fit(10)) == 3


def test_patience_needs_validation():
    model, opt, (train, _, _) = _setup()
    with pytest.raises(ValueError, match="needs a val_loader"):
        Trainer(model, opt, train, patience=2)


def test_cli_early_stopping(tmp_path, capsys, small_args):
    """A learning rate too small to change any float32 weight: the validation loss of epoch
    2 equals epoch 1's, which is no improvement, so patience 1 stops the run there."""
    log = tmp_path / "l.json"
    code = main(small_args("--epochs", "8", "--val-split", "0.25", "--patience", "1",
                           "--lr", "1e-30", "--log", str(log)))
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads(log.read_text())
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2]
    assert doc["epochs"][1]["val_loss"] == doc["epochs"][0]["val_loss"]
    assert doc["totals"]["stopped_early"] and doc["totals"]["best_epoch"] == 1
    assert doc["totals"]["final"]["weights"] == "best"
    assert "early stopping" in out and "restored the weights of epoch 1" in out
