"""MNIST, Fashion-MNIST and CIFAR-10, read from their original distribution files.

Images are kept as one uint8 array (``data``) and converted to float32 in [0, 1] only per
sample or per batch, so a dataset costs what its decompressed files cost (47 MB for the
MNIST training set). ``get_batch(indices)`` gathers and converts a whole batch with a few
vectorised NumPy calls; the ``DataLoader`` uses it instead of one ``__getitem__`` per sample.

Downloads (``download=True``) stream into a temporary file next to the destination, check its
md5 and only then rename it into place, so an interrupted download never leaves a file that
looks complete. Nothing here touches the network unless ``download=True`` and a file is
missing.
"""
import gzip
import hashlib
import os
import pickle
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["MNIST", "FashionMNIST", "CIFAR10", "md5sum", "check_md5"]

def md5sum(path, chunk_size=1 << 20):
    """Hex md5 of the file at ``path``."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def check_md5(path, md5):
    """True when ``path`` is a file whose md5 is ``md5``."""
    return os.path.isfile(path) and md5sum(path) == md5


def _download(urls, dest, md5, timeout=60):
    """Fetch the first of ``urls`` that works into ``dest``, checked against ``md5``.

    Streams into a temporary file in ``dest``'s directory and renames it into place only once
    the md5 matches. Returns None on success, else a list of "url: reason" strings.
    """
    from urllib import request  # only when downloading: keeps `import fastconv.data` light

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
        try:
            h = hashlib.md5()
            with os.fdopen(fd, "wb") as out, request.urlopen(url, timeout=timeout) as resp:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
            if h.hexdigest() != md5:
                errors.append(f"{url}: md5 {h.hexdigest()} != expected {md5}")
                continue
            os.replace(tmp, dest)
            return None
        except Exception as exc:  # network errors come in many types (URLError, OSError, ...)
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return errors


def _to_float_batch(images, channels_last=False):
    """uint8 (B, H, W) or (B, H, W, C) -> float32 (B, C, H, W) in [0, 1], contiguous.

    Exactly k / 255 in float32 for pixel k, as ``torch.ByteTensor.float().div(255)``.
    """
    images = images.transpose(0, 3, 1, 2) if channels_last else images[:, None]
    out = np.empty(images.shape, dtype=np.float32)
    np.divide(images, np.float32(255), out=out, dtype=np.float32)
    return out


class _ImageDataset:
    """Shared interface: ``data`` uint8, ``targets`` int64, ``classes``, ``transform``."""

    classes = ()
    _channels_last = False

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        """(float32 image (C, H, W) in [0, 1] after ``transform``, int label)."""
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"{type(self).__name__} index: expected an int, got "
                            f"{type(index).__name__} (use get_batch for many indices)")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__} index {index} out of range for {n} samples")
        x = _to_float_batch(self.data[index][None], self._channels_last)[0]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[index])

    def get_batch(self, indices):
        """Images float32 (B, C, H, W) after ``transform`` (applied once to the whole batch)
        and labels int64 (B,), for an integer sequence or array of ``indices``."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise TypeError(f"get_batch: expected a 1-D integer sequence of indices, got "
                            f"shape {idx.shape} dtype {idx.dtype}")
        idx = idx.astype(np.intp, copy=False)
        x = _to_float_batch(self.data.take(idx, axis=0), self._channels_last)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[idx]

    def _repr_lines(self):
        return []

    def __repr__(self):
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}"]
        lines += [f"    {line}" for line in self._repr_lines()]
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

_IDX_MAGIC = {"images": 2051, "labels": 2049}


def _read_idx(path, kind):
    """The array stored in an IDX file (gzip-compressed when ``path`` ends in .gz).

    Raises ValueError naming the file when it is not a complete uint8 IDX file of ``kind``
    ("images": magic 2051, (n, rows, cols); "labels": magic 2049, (n,)).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:  # truncated or not gzip at all
        raise ValueError(f"{path}: not a valid gzip file ({exc}); delete it and download "
                         "it again") from exc
    expected_magic = _IDX_MAGIC[kind]
    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, expected a "
                         f"{header}-byte header)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise ValueError(f"{path}: expected IDX {kind} magic number {expected_magic}, got "
                         f"{magic}; is this the right file?")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise ValueError(f"{path}: truncated or corrupted IDX file: header says shape {shape} "
                         f"({header + size} bytes), file has {len(raw)} bytes")
    # Read-only view of the decompressed bytes: no copy.
    return np.frombuffer(raw, dtype=np.uint8, count=size, offset=header).reshape(shape)


class MNIST(_ImageDataset):
    """The MNIST handwritten digits: 60000 training and 10000 test images, 1 x 28 x 28.

    Parameters
    ----------
    root : str or path
        Directory holding the original files (``train-images-idx3-ubyte.gz``,
        ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
        ``t10k-labels-idx1-ubyte.gz``; uncompressed copies without ``.gz`` also work),
        either directly or in PyTorch's layout ``root/MNIST/raw/``.
    train : bool, default True
        The training split, else the test split.
    download : bool, default False
        Download missing files from the official mirror into ``root/MNIST/raw/`` (checked
        against their md5). Files already present with the right md5 are not downloaded.
    transform : callable, optional
        Applied to each float32 image (C, H, W) by ``__getitem__`` and to each batch
        (B, C, H, W) by ``get_batch``; see ``fastconv.data.transforms``.

    Attributes
    ----------
    data : ndarray, uint8 (N, 28, 28), read-only
    targets : ndarray, int64 (N,)
    classes : list of str

    Examples
    --------
    >>> ds = MNIST("data/mnist", train=False)
    >>> x, y = ds[0]                      # float32 (1, 28, 28) in [0, 1], int
    >>> xb, yb = ds.get_batch([0, 1, 2])  # float32 (3, 1, 28, 28), int64 (3,)
    """

    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/",)
    resources = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five",
               "6 - six", "7 - seven", "8 - eight", "9 - nine"]
    # Subdirectories of ``root`` searched besides ``root`` itself, in order.
    _subdirs = (os.path.join("MNIST", "raw"), "mnist")

    def __init__(self, root, train=True, download=False, transform=None):
        self.root = Path(root).expanduser()
        self.train = bool(train)
        self.transform = transform
        prefix = "train" if self.train else "t10k"
        names = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]
        if download:
            self._download(names)
        images_path, labels_path = self._locate(names)
        images = _read_idx(images_path, "images")
        labels = _read_idx(labels_path, "labels")
        if len(images) != len(labels):
            raise ValueError(f"{images_path} has {len(images)} images but {labels_path} has "
                             f"{len(labels)} labels")
        if labels.size and labels.max() >= len(self.classes):
            raise ValueError(f"{labels_path}: label {labels.max()} out of range for "
                             f"{len(self.classes)} classes")
        self.data = images
        self.targets = labels.astype(np.int64)

    def _search_dirs(self):
        return [self.root / sub for sub in self._subdirs] + [self.root]

    def _find(self, name):
        """Path of ``name`` (or its uncompressed form) in the searched dirs, else None."""
        for d in self._search_dirs():
            for candidate in (d / name, d / name[:-3]):
                if candidate.is_file():
                    return candidate
        return None

    def _locate(self, names):
        found = {name: self._find(name) for name in names}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise FileNotFoundError(
                f"{type(self).__name__}: missing {', '.join(missing)} (or the same without "
                f".gz); looked in {', '.join(str(d) for d in self._search_dirs())}. Pass "
                f"download=True to fetch them from {self.mirrors[0]}, or copy the original "
                f"files into {self.root} or {self.root / self._subdirs[0]}.")
        return [found[name] for name in names]

    def _download(self, names):
        target = self.root / self._subdirs[0]
        failures = {}
        for name in names:
            md5 = self.resources[name]
            # Present and verified, or uncompressed (nothing to verify it against).
            if any(check_md5(d / name, md5) or (d / name[:-3]).is_file()
                   for d in self._search_dirs()):
                continue
            errors = _download([m + name for m in self.mirrors], target / name, md5)
            if errors:
                failures[name] = errors
        if failures:
            details = "\n".join(f"  {e}" for errs in failures.values() for e in errs)
            raise RuntimeError(
                f"{type(self).__name__}: could not download {', '.join(failures)} "
                f"(offline, or the mirror failed):\n{details}\nDownload them by hand from "
                f"{', '.join(self.mirrors)} and put them in {target} (or {self.root}).")

    def _repr_lines(self):
        return [f"Root location: {self.root}", f"Split: {'Train' if self.train else 'Test'}"]


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando): 60000 training and 10000 test 1 x 28 x 28 images of clothes.

    Same files, layout, parameters and attributes as :class:`MNIST`; PyTorch's layout is
    ``root/FashionMNIST/raw/``.
    """

    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    resources = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]
    _subdirs = (os.path.join("FashionMNIST", "raw"), "fashion-mnist")


# --------------------------------------------------------------------------------------------
# CIFAR-10 (pickled batches)

def _allowed_globals():
    # Resolve numpy's reconstruction helpers from numpy itself, so that pickles written under
    # numpy 1 ("numpy.core.multiarray") and numpy 2 ("numpy._core.multiarray") both map to
    # them, without importing the deprecated ``numpy.core`` alias.
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed = {}
    for pkg in ("numpy.core", "numpy._core"):
        allowed[(f"{pkg}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{pkg}.numeric", "_frombuffer")] = frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    # Python 3 writes bytes at pickle protocols < 3 as _codecs.encode(str, "latin1").
    allowed[("_codecs", "encode")] = _encode_latin1
    return allowed


def _encode_latin1(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode with anything but a str and "
                                     "latin1")
    return text.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays; refuses every other global, so that a
    crafted file cannot run code (``pickle.load`` alone would call whatever it names)."""

    _allowed = None

    def find_class(self, module, name):
        if _ArrayUnpickler._allowed is None:
            _ArrayUnpickler._allowed = _allowed_globals()
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only NumPy arrays and plain "
                "containers are allowed in a CIFAR-10 batch") from None


def _load_cifar_batch(path):
    """(uint8 images (n, 32, 32, 3), int64 labels (n,)) from one CIFAR-10 pickle batch."""
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:
        raise ValueError(f"{path}: not a valid CIFAR-10 batch: {exc}") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a dict, got {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        got = (f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise ValueError(f"{path}: expected b'data' a uint8 array (n, 3072), got {got}")
    if isinstance(labels, list) and all(type(v) is int for v in labels):
        labels = np.array(labels, dtype=np.int64)
    elif isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and labels.ndim == 1:
        labels = labels.astype(np.int64)
    else:
        raise ValueError(f"{path}: expected b'labels' a list of ints, got "
                         f"{type(labels).__name__}")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must be in 0..9, got {labels.min()}..{labels.max()}")
    # Stored as (n, 3, 32, 32) planes; keep (n, 32, 32, 3) as torchvision does.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


class CIFAR10(_ImageDataset):
    """CIFAR-10: 50000 training and 10000 test colour images, 3 x 32 x 32, in 10 classes.

    Parameters
    ----------
    root : str or path
        Directory holding ``cifar-10-batches-py/`` (``data_batch_1`` ... ``data_batch_5``,
        ``test_batch``: the original Python pickle batches), or those files directly, or
        the archive ``cifar-10-python.tar.gz`` (extracted on first use).
    train, download, transform
        As for :class:`MNIST`. ``download=True`` fetches the 163 MB archive from the
        University of Toronto and checks its md5.

    Attributes
    ----------
    data : ndarray, uint8 (N, 32, 32, 3)
    targets : ndarray, int64 (N,)
    classes : list of str

    Notes
    -----
    The batches are pickles, and ``pickle.load`` runs whatever code a file names. They are
    read with an unpickler that only reconstructs NumPy arrays and plain containers and
    refuses anything else (``ValueError`` naming the file).
    """

    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    archive = "cifar-10-python.tar.gz"
    archive_md5 = "c58f30108f718f92721af3b95e74349a"
    base_folder = "cifar-10-batches-py"
    train_list = [f"data_batch_{i}" for i in range(1, 6)]
    test_list = ["test_batch"]
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck"]
    _channels_last = True

    def __init__(self, root, train=True, download=False, transform=None):
        self.root = Path(root).expanduser()
        self.train = bool(train)
        self.transform = transform
        names = self.train_list if self.train else self.test_list
        folder = self._locate(names, download)
        parts = [_load_cifar_batch(folder / name) for name in names]
        self.data = np.concatenate([p[0] for p in parts])
        self.targets = np.concatenate([p[1] for p in parts])

    def _locate(self, names, download):
        folders = [self.root / self.base_folder, self.root]
        for folder in folders:
            if all((folder / n).is_file() for n in names):
                return folder
        archive = self.root / self.archive
        if download and not check_md5(archive, self.archive_md5):
            errors = _download([self.url], archive, self.archive_md5)
            if errors:
                raise RuntimeError(
                    f"CIFAR10: could not download {self.archive} (offline, or the server "
                    "failed):\n" + "\n".join(f"  {e}" for e in errors) +
                    f"\nDownload it by hand from {self.url} and put it in {self.root}, or "
                    f"put the extracted {self.base_folder}/ folder there.")
        if archive.is_file():
            self._extract(archive)
            if all((folders[0] / n).is_file() for n in names):
                return folders[0]
        raise FileNotFoundError(
            f"CIFAR10: missing {', '.join(names)}; looked in "
            f"{', '.join(str(f) for f in folders)} and for {archive}. Pass download=True to "
            f"fetch {self.url}, or copy {self.archive} or its extracted {self.base_folder}/ "
            f"folder into {self.root}.")

    def _extract(self, archive):
        """Extract the batch files only, refusing links and paths outside the folder."""
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar.getmembers():
                    parts = Path(member.name).parts
                    if not member.isfile() or len(parts) != 2 or parts[0] != self.base_folder:
                        continue
                    dest = self.root / self.base_folder / parts[1]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
                    try:
                        with os.fdopen(fd, "wb") as out:
                            out.write(src.read())
                        os.replace(tmp, dest)
                    finally:
                        if os.path.exists(tmp):
                            os.remove(tmp)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise ValueError(f"{archive}: not a valid CIFAR-10 archive ({exc}); delete it and "
                             "download it again") from exc

    def _repr_lines(self):
        return [f"Root location: {self.root}", f"Split: {'Train' if self.train else 'Test'}"]
