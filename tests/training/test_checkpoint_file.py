"""Checkpoint files: exact round trip, no pickle, atomic writes (including SIGKILL in the
middle of a write) and clear errors for truncated or foreign files."""
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

from fastconv.training import load_checkpoint, save_checkpoint

STATE = {
    "epoch": 3,
    "model": {"conv1.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
              "bn.num_batches_tracked": np.array(7, dtype=np.int64)},
    "optimizer": {"state": {0: {"momentum_buffer": np.full(4, 0.1, np.float32),
                                "step": 12.0}},
                  "param_groups": [{"lr": 0.1 * 3, "betas": (0.9, 0.999), "params": [0]}]},
    "rng": {"state": {"state": 2 ** 127 + 12345, "inc": 2 ** 100 + 1}},
    "best": {"val_loss": float("inf"), "epoch": None},
    "history": [{"train_loss": 1 / 3, "improved": True}],
    "scalar": np.float32(0.1),
}


def _same(a, b):
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b))
    if isinstance(a, dict):
        return (isinstance(b, dict) and list(a) == list(b)
                and all(_same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b)))
    return type(a) is type(b) and (a == b or (a != a and b != b))


def test_round_trip_is_exact_and_pickle_free(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, STATE)
    assert _same(STATE, load_checkpoint(path))
    with np.load(path, allow_pickle=False) as npz:
        assert npz["model/conv1.weight"].dtype == np.float32
        assert "optimizer/state/0/momentum_buffer" in npz.files
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temporary left


def test_failed_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, STATE)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, dict(STATE, epoch=4))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, STATE)
    blob = path.read_bytes()
    for size in (len(blob) // 2, len(blob) - 10, 100):
        path.write_bytes(blob[:size])
        with pytest.raises(ValueError, match="truncated or corrupted") as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        load_checkpoint(path)


def test_corrupted_member_is_detected(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"w": np.zeros(1000, np.float32)})
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # inside the array's data: the CRC-32 no longer matches
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_checkpoint(path)


@pytest.mark.parametrize("kind", ["npz", "npy", "text", "zip"])
def test_foreign_files_are_a_clear_error(tmp_path, kind):
    path = tmp_path / "foreign.npz"
    if kind == "npz":
        np.savez(path, weight=np.zeros(3))
        match = "not a fastconv training checkpoint.*without a '__meta__' entry"
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
        match = "not a fastconv training checkpoint"
    elif kind == "text":
        path.write_text("hello, not a checkpoint\n")
        match = "truncated or corrupted, or not an .npz file"
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("__meta__.npy", b"garbage")
        match = "not a fastconv training checkpoint: its '__meta__' entry is not a NumPy"
    with pytest.raises(ValueError, match=match) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_other_format_in_meta_is_rejected(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, __meta__=np.array('{"format": "something.else"}'))
    with pytest.raises(ValueError, match="format 'something.else'"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.npz")


_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from fastconv.training import save_checkpoint
    path = sys.argv[1]
    big = np.zeros(4_000_000, np.float32)   # 16 MB: a write takes a while
    i = 0
    while True:
        i += 1
        big[:] = i
        save_checkpoint(path, {"i": i, "big": big})
        print(i, flush=True)
""")


def test_sigkill_during_writes_leaves_a_loadable_checkpoint(tmp_path):
    """Kill a process that writes checkpoints in a loop at several moments; whatever is
    under the final name always loads and is consistent."""
    path = tmp_path / "ck.npz"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, str(script), str(path)],
                                stdout=subprocess.PIPE, env=env, text=True)
        try:
            if not path.exists():  # the first write must complete before a kill means much
                assert proc.stdout.readline().strip(), "writer failed"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        state = load_checkpoint(path)
        assert state["i"] >= 1
        assert np.all(state["big"] == state["i"])
