"""A training process killed with SIGKILL in the middle of writing a checkpoint leaves the
previous checkpoint loadable, and resuming from it continues bit-identically to a run that
was never interrupted; truncated and foreign files are refused with a clear message.

The child is a real ``fastconv train`` run. Its checkpoint writer is slowed by wrapping the
file object that ``save_checkpoint`` writes through (not the atomic-write machinery under
test): after the first 64 KiB of the epoch-2 checkpoint (of about 500 KiB) it says so and
sleeps, and the parent kills it then.
"""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv as fc
from fastconv.cli import main
from fastconv.training import load_checkpoint

ARGS = ["train", "--model", "lenet5", "--limit-train", "192", "--limit-test", "64",
        "--batch-size", "32", "--threads", "1", "--quiet", "--seed", "4", "--augment",
        "--scheduler", "step"]

_CHILD = textwrap.dedent("""
    import sys, time
    import fastconv.training.checkpoint as ck

    real_atomic_write = ck.atomic_write
    saves = [0]

    class Stalling:
        # a file that, once 64 KiB of this save went through, announces it and sleeps
        def __init__(self, f):
            self.f, self.n = f, 0
        def write(self, b):
            out = self.f.write(b)
            self.n += len(b)
            if self.n > (64 << 10):
                print("MID-SAVE", saves[0], flush=True)
                time.sleep(600)
            return out
        def __getattr__(self, name):
            return getattr(self.f, name)

    def atomic_write(path, write):
        saves[0] += 1
        if saves[0] < int(sys.argv[1]):
            return real_atomic_write(path, write)
        return real_atomic_write(path, lambda f: write(Stalling(f)))

    ck.atomic_write = atomic_write
    from fastconv.cli import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = fc.get_num_threads()
    yield
    fc.set_num_threads(threads)


def _env():
    import fastconv
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p))


def _kill_mid_save(tmp_path, path, stall_at_save):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(stall_at_save), *ARGS,
                             "--epochs", "3", "--checkpoint", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=tmp_path)
    try:
        for line in proc.stdout:          # the run's header, then our signal
            if line.startswith("MID-SAVE"):
                break
        else:
            raise AssertionError(f"the child never stalled: {proc.stderr.read()}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _history(state):
    return [(r["train_loss"], r["test_loss"], r["lr"]) for r in state["history"]]


def test_sigkill_mid_save_keeps_previous_checkpoint_and_resume_is_exact(tmp_path, capsys):
    full, cut = tmp_path / "full.npz", tmp_path / "cut.npz"
    assert main(ARGS + ["--epochs", "3", "--checkpoint", str(full)]) == 0

    _kill_mid_save(tmp_path, cut, stall_at_save=2)
    strays = [p.name for p in tmp_path.iterdir() if p.name.startswith(".cut.npz.")]
    assert strays, "the kill did not land inside a checkpoint write"
    state = load_checkpoint(cut)            # the epoch-1 checkpoint, whole
    assert state["epoch"] == 1
    reference = load_checkpoint(full)
    assert _history(state) == _history(reference)[:1]

    assert main(["train", "--resume", str(cut), "--epochs", "3", "--threads", "1",
                 "--quiet"]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    resumed = load_checkpoint(cut)
    assert resumed["epoch"] == 3
    assert _history(resumed) == _history(reference)
    for key, value in reference["model"].items():
        assert resumed["model"][key].tobytes() == value.tobytes(), key
    for key, value in reference["optimizer"]["state"].items():
        for name, buf in value.items():
            got = resumed["optimizer"]["state"][key][name]
            assert np.asarray(got).tobytes() == np.asarray(buf).tobytes(), (key, name)


def test_sigkill_during_the_first_save_leaves_no_checkpoint(tmp_path):
    """Killed while writing the very first checkpoint: nothing under the final name (no
    half-written file to mistake for a checkpoint), and resuming says the file is missing."""
    path = tmp_path / "first.npz"
    _kill_mid_save(tmp_path, path, stall_at_save=1)
    assert not path.exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(path)


def test_truncated_and_foreign_files_are_refused_clearly(tmp_path, capsys):
    good = tmp_path / "good.npz"
    assert main(ARGS + ["--epochs", "1", "--checkpoint", str(good)]) == 0
    blob = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(blob[: len(blob) * 2 // 3])
    weights = tmp_path / "weights.npz"
    fc.nn.save(fc.models.lenet5(), weights)
    text = tmp_path / "notes.npz"
    text.write_text("not a checkpoint\n")
    capsys.readouterr()
    for path, message in ((truncated, "truncated or corrupted"),
                          (weights, "not a fastconv training checkpoint"),
                          (text, "truncated or corrupted, or not an .npz file")):
        with pytest.raises(ValueError, match=message) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)
        # the command line says the same in one line, without a traceback
        assert main(["train", "--resume", str(path), "--quiet"]) != 0
        err = capsys.readouterr().err
        assert "cannot resume" in err and message.split()[0] in err and "Traceback" not in err
    with pytest.raises(ValueError, match="truncated, corrupted or of another format"):
        fc.nn.load(truncated)
