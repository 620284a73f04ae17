"""Optimisers and learning-rate schedules, with PyTorch's names, signatures and update rules.

>>> from fastconv.optim import SGD
>>> from fastconv.optim.lr_scheduler import StepLR
>>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> sched = StepLR(opt, step_size=30)
"""
from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
