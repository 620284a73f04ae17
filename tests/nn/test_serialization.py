"""Weight files: .npz round trip (atomic write), safetensors when installed, clear errors
for truncated or foreign files."""
import os

import numpy as np
import pytest

import fastconv as fc
from fastconv import models, nn
from fastconv.nn import load, save


def _assert_same(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert np.array_equal(a[k], b[k]), k


def test_npz_round_trip_module_and_dict(tmp_path):
    fc.manual_seed(0)
    model = models.resnet20()
    model.train()(fc.tensor(np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)))
    path = tmp_path / "w.npz"
    save(model, path)
    loaded = load(path)
    _assert_same(loaded, model.state_dict())
    assert loaded["bn1.num_batches_tracked"].dtype == np.int64
    assert loaded["bn1.num_batches_tracked"].shape == ()
    other = models.resnet20()
    other.load_state_dict(loaded)
    _assert_same(other.state_dict(), model.state_dict())
    # plain np.load reads it too
    with np.load(path) as z:
        assert np.array_equal(z["conv1.weight"], model.conv1.weight.data)
    # a dict of Tensors / arrays, any extension
    save({"a": fc.tensor(np.arange(3.0)), "b": np.eye(2, dtype=np.float32)},
         tmp_path / "d.weights")
    d = load(tmp_path / "d.weights")
    assert np.array_equal(d["a"], np.arange(3.0)) and d["b"].dtype == np.float32


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    save({"x": np.ones(3)}, path)
    assert sorted(os.listdir(tmp_path)) == ["w.npz"]

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(OSError, match="disk full"):
        save({"x": np.zeros(3)}, path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["w.npz"]            # temp file removed
    assert np.array_equal(load(path)["x"], np.ones(3))          # old file intact


def test_truncated_and_foreign_files_raise_value_error(tmp_path):
    path = tmp_path / "w.npz"
    save(models.lenet5(), path)
    blob = path.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load(bad)
    foreign = tmp_path / "foreign.npz"
    foreign.write_bytes(b"this is not a weights file at all" * 10)
    with pytest.raises(ValueError, match="not a valid .npz"):
        load(foreign)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        load(tmp_path / "obj.npy")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")
    with pytest.raises(TypeError):
        save(42, tmp_path / "x.npz")


def test_safetensors_round_trip_or_clear_import_error(tmp_path):
    model = models.lenet5()
    path = tmp_path / "w.safetensors"
    try:
        import safetensors  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install safetensors"):
            save(model, path)
        with pytest.raises(ImportError, match="pip install safetensors"):
            load(path)
        return
    save(model, path)
    _assert_same(load(path), model.state_dict())
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="safetensors"):
        load(bad)


def test_load_torch_converted_state_dict_file(tmp_path):
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(3, 2)
    save({k: v.numpy() for k, v in lin.state_dict().items()}, tmp_path / "t.npz")
    ours = nn.Linear(3, 2)
    ours.load_state_dict(load(tmp_path / "t.npz"))
    assert np.array_equal(ours.weight.data, lin.weight.detach().numpy())
