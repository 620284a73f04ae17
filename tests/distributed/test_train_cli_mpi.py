"""``fastconv train --distributed``: under ``mpiexec -n 2`` it trains like one process with
twice the batch, only rank 0 prints and writes; without mpi4py it says what to install."""
import json
import os
import sys

from fastconv.cli import main
from fastconv.training import load_checkpoint
from fctest import assert_close
from mpitest import needs_mpi, run_mpi

CLI = "import sys\nfrom fastconv.cli import main\nsys.exit(main(sys.argv[1:]))\n"
SMALL = ["train", "--limit-train", "128", "--limit-test", "64", "--epochs", "2", "--quiet",
         "--scheduler", "step"]


def test_distributed_without_mpi4py_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now fails
    code = main(SMALL + ["--distributed", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--distributed needs mpi4py" in err and "pip install '.[mpi]'" in err


def test_importing_fastconv_distributed_does_not_need_mpi4py():
    from fctest import run_python
    proc = run_python(["-c", (
        "import sys; sys.modules['mpi4py'] = None\n"
        "import fastconv, fastconv.distributed as dist\n"
        "assert not dist.is_available() and not dist.is_initialized()\n"
        "try:\n"
        "    dist.init_process_group()\n"
        "except ImportError as e:\n"
        "    print(e)\n")])
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'fastconv[mpi]'" in proc.stdout


def test_sync_batchnorm_needs_distributed(capsys):
    assert main(SMALL + ["--sync-batchnorm", "--threads", "1"]) == 2
    assert "--sync-batchnorm needs --distributed" in capsys.readouterr().err


@needs_mpi
def test_two_ranks_train_like_one_process_with_twice_the_batch_and_resume(tmp_path, capsys):
    env = {"OMP_NUM_THREADS": ""}  # the default thread count: cores / ranks
    proc, _ = run_mpi(2, CLI, args=SMALL + ["--distributed", "--batch-size", "16",
                                            "--checkpoint", "d.npz", "--log", "d.json"],
                      cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("lenet5 (61,706 parameters)") == 1  # only rank 0 prints
    assert "distributed: 2 ranks x" in out and "batch 16 per rank (32 in all)" in out
    assert len([line for line in out.splitlines() if line.startswith("epoch")]) == 2
    log = json.loads((tmp_path / "d.json").read_text())
    assert log["run"]["distributed"] == {"world_size": 2, "sync_batchnorm": False}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert log["run"]["threads"] == max(1, cores // 2)
    assert [e["train_images"] for e in log["epochs"]] == [128, 128]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "d.npz"]

    capsys.readouterr()
    assert main(SMALL + ["--batch-size", "32", "--threads", "1", "--checkpoint",
                         str(tmp_path / "s.npz"), "--log", str(tmp_path / "s.json")]) == 0
    single = json.loads((tmp_path / "s.json").read_text())
    for dist_epoch, one in zip(log["epochs"], single["epochs"]):
        for key in ("train_loss", "test_loss"):
            assert abs(dist_epoch[key] - one[key]) < 1e-4, key
        for key in ("train_accuracy", "test_accuracy"):  # up to a near-tie argmax or two
            assert abs(dist_epoch[key] - one[key]) <= 2 / 64, key
    got, want = load_checkpoint(tmp_path / "d.npz"), load_checkpoint(tmp_path / "s.npz")
    for key, value in want["model"].items():
        assert_close(got["model"][key], value, tol=1e-4, what=key)

    # One epoch, then --resume to two: the same bits as the uninterrupted distributed run.
    part = SMALL[:SMALL.index("--epochs")] + SMALL[SMALL.index("--epochs") + 2:]
    proc, _ = run_mpi(2, CLI, args=part + ["--epochs", "1", "--distributed", "--batch-size",
                                           "16", "--checkpoint", "p.npz"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc, _ = run_mpi(2, CLI, args=["train", "--resume", "p.npz", "--epochs", "2",
                                    "--distributed", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resuming after epoch 1" in proc.stdout
    resumed = load_checkpoint(tmp_path / "p.npz")
    assert resumed["epoch"] == 2
    for key, value in got["model"].items():
        assert resumed["model"][key].tobytes() == value.tobytes(), key


@needs_mpi
def test_setup_failure_is_reported_once_and_every_rank_exits_2(tmp_path):
    proc, _ = run_mpi(2, CLI, args=SMALL + ["--distributed", "--resume", "missing.npz"],
                      cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("fastconv train: cannot resume") == 1, proc.stderr
    assert "MPI_Abort" not in proc.stderr
