"""Datasets, a batching ``DataLoader`` and batch-vectorised transforms.

>>> from fastconv.data import MNIST, DataLoader, transforms as T
>>> train = MNIST("data", transform=T.Compose([T.RandomCrop(28, padding=2),
...                                            T.Normalize((0.1307,), (0.3081,))]))
>>> for x, y in DataLoader(train, batch_size=64, shuffle=True):
...     ...   # x: Tensor float32 (64, 1, 28, 28), y: Tensor int64 (64,)
"""
from . import transforms
from .datasets import CIFAR10, MNIST, FashionMNIST, check_md5, md5sum
from .loader import DataLoader, Subset, random_split
from .synthetic import SyntheticShapes

__all__ = ["MNIST", "FashionMNIST", "CIFAR10", "SyntheticShapes", "DataLoader", "Subset",
           "random_split", "transforms", "md5sum", "check_md5"]
