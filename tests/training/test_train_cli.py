"""`fastconv train` through `fastconv.cli.main`: output, JSON log, exit codes and messages."""
import json

import numpy as np
import pytest

from fastconv.cli import main


def test_short_run_prints_epochs_and_writes_log(tmp_path, capsys, small_args):
    log = tmp_path / "run.json"
    ckpt = tmp_path / "run.npz"
    code = main(small_args("--epochs", "2", "--log", str(log), "--checkpoint", str(ckpt)))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lenet5 (61,706 parameters) on synthetic: 256 train, 256 test images" in out
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2  train loss")
    assert "test loss" in lines[0] and "img/s" in lines[0]
    assert "done: 2 epochs" in out

    doc = json.loads(log.read_text())
    assert doc["format"] == "fastconv.training.log" and doc["status"] == "finished"
    args = doc["run"]["args"]
    assert args["model"] == "lenet5" and args["dataset"] == "synthetic"
    assert args["epochs"] == 2 and args["batch_size"] == 32 and args["limit_train"] == 256
    assert doc["run"]["build_info"]["version"]
    assert doc["run"]["threads"] == 1
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2]
    for e in doc["epochs"]:
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                    "images_per_s", "epoch_time_s", "train_time_s", "lr"):
            assert isinstance(e[key], float), key
        assert e["train_images"] == 256
    totals = doc["totals"]
    assert totals["epochs_run"] == 2 and totals["train_images"] == 512
    assert totals["final"]["test_accuracy"] == doc["epochs"][-1]["test_accuracy"]
    # The checkpoint is a plain .npz that NumPy reads without pickle.
    with np.load(ckpt, allow_pickle=False) as npz:
        assert "__meta__" in npz.files and "model/conv1.weight" in npz.files


def test_validation_split_and_schedule(tmp_path, capsys, small_args):
    code = main(small_args("--epochs", "2", "--val-split", "0.25", "--scheduler", "step",
                           "--optimizer", "adam", "--log", str(tmp_path / "l.json")))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "192 train, 64 validation, 256 test images" in out
    assert "val loss" in out
    epochs = json.loads((tmp_path / "l.json").read_text())["epochs"]
    assert epochs[0]["lr"] == pytest.approx(1e-3) and epochs[1]["lr"] == pytest.approx(1e-4)
    assert all(isinstance(e["val_loss"], float) for e in epochs)


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "MNIST: missing" in err and str(tmp_path) in err
    assert "Traceback" not in err


@pytest.mark.parametrize("extra, message", [
    (["--patience", "2"], "needs a validation set"),
    (["--val-split", "1.5"], "--val-split must be in [0, 1)"),
    (["--epochs", "-1"], "--epochs must be >= 0"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_bad_arguments_exit_2(capsys, small_args, extra, message):
    assert main(small_args(*extra)) == 2
    assert message in capsys.readouterr().err


def test_resume_from_foreign_or_missing_file_exits_2(tmp_path, capsys, small_args):
    foreign = tmp_path / "weights.npz"
    np.savez(foreign, w=np.zeros(3))
    assert main(small_args("--resume", str(foreign))) == 2
    err = capsys.readouterr().err
    assert "not a fastconv training checkpoint" in err and str(foreign) in err
    assert main(small_args("--resume", str(tmp_path / "nope.npz"))) == 2
    assert "does not exist" in capsys.readouterr().err


def test_resume_rejects_changed_settings(tmp_path, capsys, small_args):
    ckpt = str(tmp_path / "c.npz")
    assert main(small_args("--epochs", "1", "--checkpoint", ckpt)) == 0
    capsys.readouterr()
    assert main(small_args("--resume", ckpt, "--lr", "0.5")) == 2
    assert "differs from the checkpoint's" in capsys.readouterr().err


def test_plot_without_matplotlib_is_a_message(tmp_path, capsys, small_args, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    png = tmp_path / "curves.png"
    assert main(small_args("--epochs", "1", "--plot", str(png))) == 0
    out = capsys.readouterr().out
    assert "--plot skipped" in out and "pip install matplotlib" in out
    assert not png.exists()


def test_plot_with_matplotlib(tmp_path, capsys, small_args):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    assert main(small_args("--epochs", "2", "--plot", str(png))) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
