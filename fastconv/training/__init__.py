"""Training: the loop (:class:`Trainer`, :func:`fit`, :func:`evaluate`), checkpoints that
resume bit-identically, progress output, the JSON log and the curves' plot. ``fastconv
train`` is a thin command-line wrapper around these.

>>> from fastconv.training import fit
>>> trainer = fit(model, optimizer, train_loader, epochs=3, test_loader=test_loader,
...               checkpoint="run.npz")                              # doctest: +SKIP
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .context import LocalContext
from .progress import Reporter
from .trainer import Trainer, evaluate, fit

__all__ = ["Trainer", "fit", "evaluate", "Reporter", "LocalContext", "save_checkpoint",
           "load_checkpoint"]
