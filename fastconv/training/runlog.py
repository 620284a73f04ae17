"""The JSON log of a training run (``fastconv train --log PATH``).

Rewritten atomically at the end of every epoch, so it can be read while the run goes on and
survives a crash. Standard JSON: non-finite numbers are written as ``null``. Layout::

    {"format": "fastconv.training.log", "version": 1, "status": "running" | "finished" |
     "interrupted", "run": {arguments, dataset, model, build_info, ...},
     "epochs": [{"epoch": 1, "lr": ..., "train_loss": ..., "train_accuracy": ...,
                 "val_loss": ..., "test_loss": ..., "images_per_s": ..., ...}, ...],
     "totals": {"epochs_run", "train_images", "train_time_s", "wall_time_s",
                "images_per_s", "best_epoch", "best_val_loss", "stopped_early", "final"}}
"""
import json
import math

import numpy as np

from .checkpoint import atomic_write

__all__ = ["write_log", "LOG_FORMAT"]

LOG_FORMAT = "fastconv.training.log"


def _plain(obj):
    """``obj`` with NumPy scalars as Python numbers and non-finite floats as None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_log(path, run, history, totals, status):
    """Write the log to ``path`` atomically (see the module docstring for the layout)."""
    doc = {"format": LOG_FORMAT, "version": 1, "status": status, "run": _plain(run),
           "epochs": _plain(history), "totals": _plain(totals)}
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
