"""MNIST / Fashion-MNIST on the real files in shared/data; CIFAR-10 on tiny batches written in
the original pickle format. No test touches the network."""
import gzip
import io
import os
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fastconv.data import CIFAR10, MNIST, FashionMNIST, check_md5, md5sum

DATA = Path(os.environ.get("FASTCONV_DATA",
                           Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
needs_data = pytest.mark.skipif(not DATA.is_dir(),
                                reason=f"dataset directory {DATA} not found (set FASTCONV_DATA)")
MNIST_DIR, FASHION_DIR = DATA / "mnist", DATA / "fashion-mnist"
T10K = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@pytest.fixture(scope="module")
def mnist_train():
    return MNIST(MNIST_DIR, train=True)


@pytest.fixture(scope="module")
def mnist_test():
    return MNIST(MNIST_DIR, train=False)


def _copy_t10k(src, dest):
    dest.mkdir(parents=True, exist_ok=True)
    for name in T10K:
        shutil.copyfile(src / name, dest / name)


# ------------------------------------------------------------------------------ real files

@needs_data
def test_md5_of_shared_files_match_published():
    listed = {}
    for line in (DATA / "MD5SUMS").read_text().splitlines():
        md5, rel = line.split()
        listed[rel] = md5
    for cls, folder in ((MNIST, "mnist"), (FashionMNIST, "fashion-mnist")):
        for name, md5 in cls.resources.items():
            assert listed[f"{folder}/{name}"] == md5
            assert check_md5(DATA / folder / name, md5), name
    assert not check_md5(MNIST_DIR / T10K[0], "0" * 32)
    assert not check_md5(MNIST_DIR / "no-such-file", md5sum(MNIST_DIR / T10K[0]))


@needs_data
def test_mnist_train(mnist_train):
    ds = mnist_train
    assert len(ds) == 60000
    assert ds.data.shape == (60000, 28, 28) and ds.data.dtype == np.uint8
    assert ds.targets.shape == (60000,) and ds.targets.dtype == np.int64
    assert ds.targets[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(ds.targets).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918,
                                                6265, 5851, 5949]
    # The normalisation constants everyone uses come from these pixels.
    mean = ds.data.mean() / 255
    assert abs(mean - 0.1307) < 5e-4
    assert ds.data.min() == 0 and ds.data.max() == 255
    assert len(ds.classes) == 10


@needs_data
def test_mnist_test_histogram_and_items(mnist_test):
    ds = mnist_test
    assert len(ds) == 10000 and ds.data.shape == (10000, 28, 28)
    assert np.bincount(ds.targets, minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892,
                                                              958, 1028, 974, 1009]
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    assert type(y) is int and y == 7
    assert 0 <= x.min() and x.max() <= 1 and x.max() == 1.0
    np.testing.assert_array_equal(x[0], ds.data[0].astype(np.float32) / np.float32(255))
    # Digits are centred in a background frame: its pixels are almost all zero.
    frame = np.concatenate([ds.data[:, [0, -1], :].ravel(), ds.data[:, :, [0, -1]].ravel()])
    assert np.count_nonzero(frame) < 1e-3 * frame.size
    x_last, _ = ds[-1]
    np.testing.assert_array_equal(x_last, ds[len(ds) - 1][0])
    with pytest.raises(IndexError):
        ds[10000]


@needs_data
def test_get_batch_matches_items(mnist_test):
    idx = [5, 0, 9999, 5]
    xb, yb = mnist_test.get_batch(idx)
    assert xb.shape == (4, 1, 28, 28) and xb.dtype == np.float32 and xb.flags.c_contiguous
    assert yb.dtype == np.int64
    for k, i in enumerate(idx):
        x, y = mnist_test[i]
        np.testing.assert_array_equal(xb[k], x)
        assert yb[k] == y
    with pytest.raises(IndexError):
        mnist_test.get_batch([10000])
    with pytest.raises(TypeError):
        mnist_test.get_batch([0.5])


@needs_data
def test_fashion_mnist_test():
    ds = FashionMNIST(FASHION_DIR, train=False)
    assert len(ds) == 10000 and ds.data.shape == (10000, 28, 28)
    assert np.bincount(ds.targets).tolist() == [1000] * 10
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    # Not the MNIST files under another name.
    assert ds.targets[:5].tolist() == [9, 2, 1, 1, 6]


@needs_data
def test_both_layouts_and_uncompressed(tmp_path, monkeypatch, mnist_test):
    _copy_t10k(MNIST_DIR, tmp_path / "torch" / "MNIST" / "raw")
    ds = MNIST(tmp_path / "torch", train=False)
    np.testing.assert_array_equal(ds.data, mnist_test.data)
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in T10K:
        (flat / name[:-3]).write_bytes(gzip.decompress((MNIST_DIR / name).read_bytes()))
    ds = MNIST(flat, train=False)
    np.testing.assert_array_equal(ds.data, mnist_test.data)
    np.testing.assert_array_equal(ds.targets, mnist_test.targets)
    # Uncompressed files are used as they are, even with download=True.
    monkeypatch.setattr(urllib.request, "urlopen", _refuse)
    assert len(MNIST(flat, train=False, download=True)) == 10000
    _copy_t10k(FASHION_DIR, tmp_path / "torch" / "FashionMNIST" / "raw")
    assert FashionMNIST(tmp_path / "torch", train=False).targets[0] == 9


def test_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        MNIST(tmp_path, train=False)
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path) in msg and "download=True" in msg


@needs_data
def test_truncated_and_wrong_files(tmp_path):
    _copy_t10k(MNIST_DIR, tmp_path)
    images = tmp_path / T10K[0]
    raw = images.read_bytes()
    images.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        MNIST(tmp_path, train=False)
    # Decompresses fine but holds too few pixels.
    full = gzip.decompress(raw)
    images.write_bytes(gzip.compress(full[:-100], compresslevel=1))
    with pytest.raises(ValueError, match="truncated"):
        MNIST(tmp_path, train=False)
    # A labels file where the images should be: wrong magic number.
    shutil.copyfile(MNIST_DIR / T10K[1], images)
    with pytest.raises(ValueError, match="magic number 2051, got 2049"):
        MNIST(tmp_path, train=False)
    images.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="t10k-images"):
        MNIST(tmp_path, train=False)


# ------------------------------------------------------------------------------ download

def _refuse(url, *args, **kwargs):
    raise urllib.error.URLError("network is unreachable (test)")


def test_download_failure_names_files_urls_and_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _refuse)
    with pytest.raises(RuntimeError) as err:
        MNIST(tmp_path, train=False, download=True)
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert not list((tmp_path / "MNIST" / "raw").iterdir())  # no partial files left


def test_download_unreachable_url(tmp_path, monkeypatch):
    # Port 9 on localhost: refused at once, never leaves the machine.
    monkeypatch.setattr(FashionMNIST, "mirrors", ("http://127.0.0.1:9/",))
    with pytest.raises(RuntimeError, match=r"http://127\.0\.0\.1:9/t10k-labels-idx1-ubyte\.gz"):
        FashionMNIST(tmp_path, train=False, download=True)


@needs_data
def test_download_with_fake_server(tmp_path, monkeypatch):
    served = []

    def fake_urlopen(url, timeout=None):
        name = url.rsplit("/", 1)[1]
        served.append(name)
        return io.BytesIO((MNIST_DIR / name).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    ds = MNIST(tmp_path, train=False, download=True)
    assert sorted(served) == sorted(T10K) and len(ds) == 10000
    raw = tmp_path / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(T10K)
    assert all(check_md5(raw / n, MNIST.resources[n]) for n in T10K)
    # Present with the right md5: nothing is fetched again.
    monkeypatch.setattr(urllib.request, "urlopen", _refuse)
    assert len(MNIST(tmp_path, train=False, download=True)) == 10000


@needs_data
def test_download_md5_mismatch_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, timeout=None: io.BytesIO(b"<html>not found</html>"))
    with pytest.raises(RuntimeError, match="md5"):
        MNIST(tmp_path, train=False, download=True)
    assert not list((tmp_path / "MNIST" / "raw").iterdir())


# ------------------------------------------------------------------------------ CIFAR-10

def _write_cifar(folder, n=4, protocol=2, seed=0):
    """Batches in the original layout: dict of bytes keys, b"data" uint8 (n, 3072) with the
    red, green and blue planes of each image in turn, b"labels" a list of ints."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_tiny_batches(tmp_path, protocol):
    written = _write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    train = CIFAR10(tmp_path, train=True)
    test = CIFAR10(tmp_path, train=False)
    assert len(train) == 20 and len(test) == 4
    assert train.data.shape == (20, 32, 32, 3) and train.data.dtype == np.uint8
    assert train.targets.dtype == np.int64
    assert train.targets.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)),
                                         [])
    rows, _ = written["test_batch"]
    x, y = test[1]
    assert x.shape == (3, 32, 32) and x.dtype == np.float32 and type(y) is int
    # Pixel (c, h, w) of image i is byte c * 1024 + h * 32 + w of its row.
    np.testing.assert_array_equal(x, rows[1].reshape(3, 32, 32) / np.float32(255))
    xb, yb = test.get_batch([3, 1])
    assert xb.shape == (2, 3, 32, 32) and xb.flags.c_contiguous
    np.testing.assert_array_equal(xb[1], x)
    assert yb.tolist() == [written["test_batch"][1][3], y]
    assert test.classes[0] == "airplane" and len(test.classes) == 10


def test_cifar10_flat_layout_and_archive(tmp_path):
    _write_cifar(tmp_path / "flat", n=2)
    assert len(CIFAR10(tmp_path / "flat", train=False)) == 2
    _write_cifar(tmp_path / "src" / "cifar-10-batches-py", n=3)
    (tmp_path / "arch").mkdir()
    with tarfile.open(tmp_path / "arch" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert len(CIFAR10(tmp_path / "arch", train=True)) == 15
    assert (tmp_path / "arch" / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar10_refuses_malicious_pickle(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder, n=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"test_batch.*refusing to load global"):
        CIFAR10(tmp_path, train=False)
    assert not marker.exists()


@pytest.mark.parametrize("batch, what", [
    ([1, 2, 3], "expected a dict"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8 array"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "uint8 array"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}, "list of ints"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "0..9"),
])
def test_cifar10_rejects_unexpected_content(tmp_path, batch, what):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(ValueError, match=what):
        CIFAR10(tmp_path, train=False)
    (folder / "test_batch").write_bytes(b"\x80\x02}q")  # truncated pickle
    with pytest.raises(ValueError, match="test_batch"):
        CIFAR10(tmp_path, train=False)


def test_cifar10_missing_and_download_failure(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="download=True") as err:
        CIFAR10(tmp_path, train=False)
    assert "test_batch" in str(err.value) and str(tmp_path) in str(err.value)
    monkeypatch.setattr(urllib.request, "urlopen", _refuse)
    with pytest.raises(RuntimeError) as err:
        CIFAR10(tmp_path, train=False, download=True)
    msg = str(err.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path) in msg
    assert list(tmp_path.iterdir()) == []
