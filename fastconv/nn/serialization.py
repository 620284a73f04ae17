"""Weight files: ``save(state_dict_or_module, path)`` and ``load(path)``.

Two formats, chosen by the file name:

* ``*.safetensors``: the safetensors format, through the ``safetensors`` package (an
  ``ImportError`` says to ``pip install safetensors`` when it is missing).
* anything else: a NumPy ``.npz`` archive (uncompressed), one ``<key>.npy`` member per
  state_dict entry, readable with ``np.load``.

Writes are atomic: the file is written to a temporary file in the same directory, flushed
and fsync'ed, then renamed over ``path`` with ``os.replace``, so a crash never leaves a
half-written file under the final name.

Examples
--------
>>> import fastconv as fc
>>> model = fc.models.lenet5()
>>> fc.nn.save(model, "lenet5.npz")                           # doctest: +SKIP
>>> model.load_state_dict(fc.nn.load("lenet5.npz"))           # doctest: +SKIP
"""
import io
import json
import os
import struct
import zipfile
from collections import OrderedDict

import numpy as np

from .._io import atomic_write
from ..tensor import Tensor

__all__ = ["save", "load"]

_ORDER_KEY = "fastconv.key_order"


def _is_safetensors(path):
    return os.fspath(path).endswith(".safetensors")


def _import_safetensors():
    try:
        from safetensors import numpy as st_numpy
    except ImportError as exc:
        raise ImportError("saving or loading .safetensors files needs the safetensors "
                          "package: pip install safetensors (or use a .npz path)") from exc
    return st_numpy


def _arrays(obj):
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        obj = obj.state_dict()
    if not hasattr(obj, "items"):
        raise TypeError(f"save: expected a Module or a mapping of name -> array, got "
                        f"{type(obj).__name__}")
    out = OrderedDict()
    for key, value in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"save: expected string keys, got {key!r}")
        array = np.asarray(value.data if isinstance(value, Tensor) else value)
        if array.dtype == object:
            raise TypeError(f"save: entry {key!r} is not a numeric array")
        out[key] = array
    return out


def _write_npz(arrays, f):
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, array in arrays.items():
            with zf.open(key + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def save(obj, path):
    """Save a module's ``state_dict()`` (or a mapping of name -> array/Tensor) to ``path``.

    Parameters
    ----------
    obj : Module or mapping of str -> array_like
    path : str or os.PathLike
        Ending in ``.safetensors``: safetensors format; otherwise ``.npz`` format (written
        exactly at ``path``, no extension added).
    """
    arrays = _arrays(obj)
    if _is_safetensors(path):
        st = _import_safetensors()
        # np.asarray(order="C") keeps 0-d arrays 0-d (ascontiguousarray would not).
        blob = st.save({k: np.asarray(v, order="C") for k, v in arrays.items()},
                       metadata={"format": "np", _ORDER_KEY: json.dumps(list(arrays))})
        atomic_write(path, lambda f: f.write(blob))
    else:
        atomic_write(path, lambda f: _write_npz(arrays, f))


def _safetensors_order(blob):
    """The key order :func:`save` recorded in the header's metadata (safetensors itself
    stores tensors sorted by dtype and name); [] when absent."""
    (n,) = struct.unpack("<Q", blob[:8])
    meta = json.loads(blob[8:8 + n]).get("__metadata__") or {}
    return json.loads(meta.get(_ORDER_KEY, "[]"))


def _bad_file(path, fmt, exc):
    return ValueError(f"cannot load weights from {os.fspath(path)!r}: not a valid {fmt} file "
                      f"(truncated, corrupted or of another format): {exc}")


def load(path):
    """Read a weight file written by :func:`save` (or ``np.savez``, or safetensors).

    Returns
    -------
    OrderedDict of str -> ndarray, in the order saved; pass it to
    ``Module.load_state_dict``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A truncated, corrupted or foreign file.
    ImportError
        A ``.safetensors`` path without the safetensors package.
    """
    if _is_safetensors(path):
        st = _import_safetensors()
        with open(path, "rb") as f:
            blob = f.read()
        try:
            loaded = st.load(blob)
            order = _safetensors_order(blob)
        except Exception as exc:  # safetensors raises its own error types
            raise _bad_file(path, "safetensors", exc) from exc
        if sorted(order) != sorted(loaded):
            order = sorted(loaded)
        return OrderedDict((k, np.array(loaded[k])) for k in order)
    with open(path, "rb") as f:
        blob = f.read()
    out = OrderedDict()
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    raise ValueError(f"unexpected member {name!r} (expected only .npy arrays)")
                with zf.open(name) as member:
                    out[name[:-4]] = np.lib.format.read_array(member, allow_pickle=False)
    except Exception as exc:  # BadZipFile, ValueError, EOFError, zlib.error, ...
        raise _bad_file(path, ".npz", exc) from exc
    return out
