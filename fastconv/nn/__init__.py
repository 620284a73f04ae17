"""Modules with parameters, as ``torch.nn``: ``Module``, ``Parameter``, containers, layers,
initialisers (``fastconv.nn.init``), gradient utilities (``fastconv.nn.utils``) and weight
files (``save``/``load``).

>>> from fastconv import nn
>>> net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
...                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
"""
from . import init, utils
from .containers import ModuleList, Sequential
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers
from .module import Module, Parameter, RemovableHandle
from .serialization import load, save

__all__ = ["Module", "Parameter", "RemovableHandle", "Sequential", "ModuleList", "init",
           "utils", "save", "load"] + list(_layers)
