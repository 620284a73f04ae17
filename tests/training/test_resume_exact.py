"""A run interrupted after an epoch and resumed from its checkpoint continues bit-identically
to the uninterrupted run (same seed and thread count): weights, optimiser state, losses."""
import numpy as np
import pytest

import fastconv as fc
from fastconv.cli import main
from fastconv.data import DataLoader
from fastconv.optim import SGD
from fastconv.optim.lr_scheduler import CosineAnnealingLR
from fastconv.training import Reporter, Trainer, load_checkpoint
from fastconv.training.recipes import build_datasets, build_model


class Interrupted(Exception):
    pass


def _trainer(tmp_path, name, epochs, callbacks=()):
    """lenet5 on 160 augmented SyntheticShapes images, SGD with momentum and a cosine
    schedule, a validation split: every piece of state a resume must restore. Two threads,
    so that the kernels' parallel reductions are part of what must repeat exactly."""
    fc.set_num_threads(2)
    fc.manual_seed(7)
    train, val, test = build_datasets("synthetic", augment=True, val_split=0.1,
                                      limit_train=160, limit_test=64, split_seed=7)
    model = build_model("lenet5", "synthetic")
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    sched = CosineAnnealingLR(opt, T_max=epochs)
    return Trainer(model, opt, DataLoader(train, batch_size=32, shuffle=True, seed=7),
                   scheduler=sched, val_loader=DataLoader(val, batch_size=64),
                   test_loader=DataLoader(test, batch_size=64),
                   checkpoint=tmp_path / f"{name}.npz", reporter=Reporter(quiet=True),
                   callbacks=callbacks)


def _losses(history):
    return [(r["train_loss"], r["train_accuracy"], r["val_loss"], r["test_loss"], r["lr"])
            for r in history]


def test_resume_is_bit_identical(tmp_path):
    epochs = 3
    reference = _trainer(tmp_path, "ref", epochs)
    reference.fit(epochs)

    def crash_after_first_epoch(trainer, record):
        if record["epoch"] == 1:
            raise Interrupted

    first = _trainer(tmp_path, "cut", epochs, callbacks=[crash_after_first_epoch])
    with pytest.raises(Interrupted):
        first.fit(epochs)
    # A fresh process state: other seeds, other draws, before resuming.
    fc.manual_seed(12345)
    np.random.default_rng().random(10)
    resumed = _trainer(tmp_path, "cut", epochs)
    resumed.resume(tmp_path / "cut.npz")
    assert resumed.epoch == 1
    resumed.fit(epochs)

    assert _losses(resumed.history) == _losses(reference.history)
    ref_state, res_state = reference.model.state_dict(), resumed.model.state_dict()
    for key in ref_state:
        assert ref_state[key].tobytes() == res_state[key].tobytes(), key
    ref_ck, res_ck = (load_checkpoint(tmp_path / f"{n}.npz") for n in ("ref", "cut"))
    for key, buf in ref_ck["optimizer"]["state"].items():
        other = res_ck["optimizer"]["state"][key]["momentum_buffer"]
        assert buf["momentum_buffer"].tobytes() == other.tobytes()
    assert ref_ck["rng"] == res_ck["rng"]
    assert ref_ck["scheduler"] == res_ck["scheduler"]


def test_cli_resume_matches_uninterrupted_run(tmp_path, capsys, small_args):
    """`--epochs 1` then `--resume ... --epochs 2` equals `--epochs 2` (step schedule,
    augmentation on)."""
    common = ("--augment", "--scheduler", "step", "--seed", "3")
    full, part = str(tmp_path / "full.npz"), str(tmp_path / "part.npz")
    assert main(small_args("--epochs", "2", "--checkpoint", full, *common)) == 0
    assert main(small_args("--epochs", "1", "--checkpoint", part, *common)) == 0
    assert main(["train", "--resume", part, "--epochs", "2", "--threads", "1",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "resuming after epoch 1" in out
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["epoch"] == b["epoch"] == 2
    assert _losses_cli(a["history"]) == _losses_cli(b["history"])
    for key in a["model"]:
        assert a["model"][key].tobytes() == b["model"][key].tobytes(), key


def _losses_cli(history):
    return [(r["train_loss"], r["test_loss"], r["lr"]) for r in history]
