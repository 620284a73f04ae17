"""Training checkpoints: one ``.npz`` archive, written atomically, read without pickle.

A checkpoint holds everything a run needs to continue bit-identically: model weights and
buffers, optimiser and scheduler state, the state of ``fastconv._config.default_rng()``
(dropout and random transforms draw from it), the data loader's seed, the epoch, the
early-stopping record, the history and the run's arguments.

Format: an uncompressed ``.npz`` (a zip of ``.npy`` members) that
``np.load(path, allow_pickle=False)`` reads. Member ``__meta__`` is a 0-d unicode array
holding one JSON document; every array in the state is its own member (``model/conv1.weight``,
``optimizer/state/0/momentum_buffer``, ...) and appears in the JSON as
``{"__ndarray__": name}``. Tuples, dicts with non-string keys and NumPy scalars are tagged the
same way, so ``load_checkpoint(save_checkpoint(state))`` returns ``state`` exactly (floats
survive JSON unchanged: Python writes the shortest repr that reads back to the same double).

Writing is atomic: the archive goes to a temporary file in the destination's directory,
which is flushed and fsync'ed, renamed over the destination with ``os.replace`` and the
directory fsync'ed. A crash or SIGKILL at any moment leaves either the previous checkpoint
or the new one under the final name, never a mixture (at worst a stray ``.<name>.*.tmp``).
"""
import json
import os
import zipfile

import numpy as np

from .._io import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "atomic_write", "FORMAT", "VERSION"]

FORMAT = "fastconv.training.checkpoint"
VERSION = 1
_META = "__meta__"


# ----------------------------------------------------------------------------- packing

def _join(name, key):
    return f"{name}/{key}" if name else str(key)


def _pack(obj, name, arrays):
    """JSON-able form of ``obj``; arrays are moved to ``arrays`` under unique names."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufc":
            raise TypeError(f"save_checkpoint: {name}: cannot store a {obj.dtype} array")
        unique, i = name, 1
        while unique in arrays or unique == _META:  # keys such as "a/b" and "a" -> "b"
            unique, i = f"{name}~{i}", i + 1
        arrays[unique] = obj
        return {"__ndarray__": unique}
    if isinstance(obj, np.generic):
        return {"__npscalar__": obj.dtype.str, "value": obj.item()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, _join(name, i), arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_pack(v, _join(name, i), arrays) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _pack(v, _join(name, k), arrays) for k, v in obj.items()}
        # Non-string keys (an optimiser's state is keyed by parameter index): keep the keys.
        return {"__items__": [[_pack(k, _join(name, f"key{i}"), arrays),
                               _pack(v, _join(name, k), arrays)]
                              for i, (k, v) in enumerate(obj.items())]}
    raise TypeError(f"save_checkpoint: {name}: cannot store a {type(obj).__name__}")


def _unpack(obj, arrays):
    if isinstance(obj, list):
        return [_unpack(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__ndarray__" in obj:
        return arrays[obj["__ndarray__"]]
    if "__npscalar__" in obj:
        return np.dtype(obj["__npscalar__"]).type(obj["value"])
    if "__tuple__" in obj:
        return tuple(_unpack(v, arrays) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_unpack(k, arrays): _unpack(v, arrays) for k, v in obj["__items__"]}
    return {k: _unpack(v, arrays) for k, v in obj.items()}


def _array_refs(obj, out):
    """Names of every ``__ndarray__`` reference in packed ``obj``."""
    if isinstance(obj, list):
        for v in obj:
            _array_refs(v, out)
    elif isinstance(obj, dict):
        if "__ndarray__" in obj:
            out.append(obj["__ndarray__"])
        for v in obj.values():
            _array_refs(v, out)
    return out


# ----------------------------------------------------------------------------- writing

def save_checkpoint(path, state):
    """Write ``state`` (nested dicts/lists/tuples of arrays, numbers, strings) to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Written exactly there (no extension added), atomically.
    state : dict
        String keys at the top level; arrays anywhere inside.
    """
    if not isinstance(state, dict):
        raise TypeError(f"save_checkpoint: expected a dict, got {type(state).__name__}")
    arrays = {}
    packed = _pack(state, "", arrays)
    meta = {"format": FORMAT, "version": VERSION, "arrays": sorted(arrays),
            "state": packed}
    text = json.dumps(meta, allow_nan=True, separators=(",", ":"))

    def write(f):
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED,
                             allowZip64=True) as zf:
            with zf.open(_META + ".npy", mode="w") as member:
                np.lib.format.write_array(member, np.array(text), allow_pickle=False)
            for name, array in arrays.items():
                with zf.open(name + ".npy", mode="w", force_zip64=True) as member:
                    # not ascontiguousarray: it would make a 0-d array 1-d
                    np.lib.format.write_array(member, np.asarray(array, order="C"),
                                              allow_pickle=False)

    atomic_write(path, write)


# ----------------------------------------------------------------------------- reading

def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    dict
        The ``state`` that was saved.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is truncated or corrupted, not an ``.npz`` archive, an ``.npz`` that is not
        a fastconv checkpoint, or one of a newer format version; the message names the file
        and what is wrong.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"checkpoint {path!r} is empty (0 bytes): an interrupted copy? "
                         "It cannot be resumed from.")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise _NotOurs("it holds a single .npy array, not an .npz archive")
        with npz:
            if _META not in npz.files:
                shown = ", ".join(npz.files[:5]) + (", ..." if len(npz.files) > 5 else "")
                raise _NotOurs(f"it is an .npz archive without a {_META!r} entry (it has: "
                               f"{shown or 'no arrays'}); is it a weights file? Load those "
                               "with fastconv.nn.load")
            meta_array = npz[_META]
            if not isinstance(meta_array, np.ndarray):  # a member that is not .npy
                raise _NotOurs(f"its {_META!r} entry is not a NumPy array")
            if meta_array.dtype.kind != "U" or meta_array.ndim != 0:
                raise _NotOurs(f"its {_META!r} entry is a {meta_array.dtype} array of shape "
                               f"{meta_array.shape}, expected a JSON string")
            try:
                meta = json.loads(str(meta_array))
            except json.JSONDecodeError as exc:
                raise _NotOurs(f"its {_META!r} entry is not valid JSON ({exc})") from exc
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
                raise _NotOurs(f"its metadata says format {got!r}, expected {FORMAT!r}")
            version = meta.get("version")
            if not isinstance(version, int) or version > VERSION:
                raise _NotOurs(f"it has format version {version!r}; this fastconv reads "
                               f"versions up to {VERSION} (upgrade fastconv)")
            names = meta.get("arrays", [])
            missing = [n for n in names if n not in npz.files]
            if missing:
                raise _NotOurs(f"arrays listed in its metadata are missing: "
                               f"{', '.join(missing[:5])}")
            # Reading every member in full also verifies each one's CRC-32.
            arrays = {n: npz[n] for n in names}
            bad = [n for n, a in arrays.items() if not isinstance(a, np.ndarray)]
            if bad:
                raise ValueError(f"members {', '.join(bad[:5])} are not .npy arrays")
            refs = _array_refs(meta["state"], [])
    except _NotOurs as exc:
        raise ValueError(f"checkpoint {path!r} is not a fastconv training checkpoint: "
                         f"{exc}") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError,
            UnicodeDecodeError) as exc:
        raise ValueError(f"checkpoint {path!r} ({size} bytes) is truncated or corrupted, or "
                         f"not an .npz file: {type(exc).__name__}: {exc}") from exc
    unknown = sorted(set(refs) - set(arrays))
    if unknown:
        raise ValueError(f"checkpoint {path!r} is corrupted: its metadata refers to arrays "
                         f"it does not list: {', '.join(unknown[:5])}")
    return _unpack(meta["state"], arrays)


class _NotOurs(Exception):
    """A readable file that is not a fastconv checkpoint (internal)."""
