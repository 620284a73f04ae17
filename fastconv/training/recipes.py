"""Named building blocks of ``fastconv train``: datasets with their normalisation and default
augmentation, models sized to the dataset, optimisers and learning-rate schedules.

Kept apart from the loop (:mod:`.trainer`) so that tests, benchmarks and a distributed
launcher build exactly what the command line builds.
"""
import math
import os
from dataclasses import dataclass

import numpy as np

from .. import data as fcdata
from .. import models, optim
from ..data import transforms as T

__all__ = ["DATASETS", "MODELS", "OPTIMIZERS", "SCHEDULERS", "DatasetSpec", "Transformed",
           "default_data_dir", "build_datasets", "build_model", "build_optimizer",
           "build_scheduler"]


@dataclass(frozen=True)
class DatasetSpec:
    """Shape, normalisation and default augmentation of one dataset."""

    channels: int
    size: int
    num_classes: int
    mean: tuple
    std: tuple
    augment_padding: int = 0   # random crop with this padding (0: none)
    augment_flip: bool = False  # random horizontal flip

    @property
    def augments_by_default(self):
        return self.augment_padding > 0 or self.augment_flip


DATASETS = {
    # Mean and std of SyntheticShapes(8000, seed=0) (the test set's differ in the 4th digit).
    "synthetic": DatasetSpec(1, 28, 10, (0.1661,), (0.2366,)),
    "mnist": DatasetSpec(1, 28, 10, (0.1307,), (0.3081,)),
    "fashion-mnist": DatasetSpec(1, 28, 10, (0.2860,), (0.3530,)),
    "cifar10": DatasetSpec(3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           augment_padding=4, augment_flip=True),
}
# SyntheticShapes sizes and seeds of the default (offline) run.
SYNTHETIC_TRAIN = (8000, 0)
SYNTHETIC_TEST = (2000, 1)

MODELS = ("lenet5", "resnet20", "resnet18", "mobilenet_small")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "cosine", "onecycle")
# Learning rate when --lr is not given.
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}


def default_data_dir():
    """``$FASTCONV_DATA`` when set, else ``./data``."""
    return os.environ.get("FASTCONV_DATA") or "data"


class Transformed:
    """``dataset`` seen through ``transform``, applied to whole batches in ``get_batch``.

    Lets the training and validation parts of one dataset (``random_split``'s subsets share
    the underlying dataset object) have different transforms: augmentation for one only.
    """

    def __init__(self, dataset, transform):
        self.dataset = dataset
        self.transform = transform

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        x, y = self.dataset[index]
        return (x if self.transform is None else self.transform(x)), y

    def get_batch(self, indices):
        from ..data.loader import fetch_batch
        x, y = fetch_batch(self.dataset, indices)
        return (x if self.transform is None else self.transform(x)), y

    @property
    def targets(self):
        return self.dataset.targets

    @property
    def classes(self):
        return self.dataset.classes

    def __repr__(self):
        return f"Transformed({self.dataset!r}, {self.transform!r})"


def _load(name, root, train, download, limit=None):
    if name == "synthetic":
        n, seed = SYNTHETIC_TRAIN if train else SYNTHETIC_TEST
        # Generated, not read: make only the images that will be used.
        return fcdata.SyntheticShapes(n if limit is None else min(n, int(limit)), seed=seed)
    cls = {"mnist": fcdata.MNIST, "fashion-mnist": fcdata.FashionMNIST,
           "cifar10": fcdata.CIFAR10}[name]
    return cls(root, train=train, download=download)


def build_datasets(name, root=None, *, augment=None, val_split=0.0, limit_train=None,
                   limit_test=None, split_seed=0, download=False):
    """Training, validation (or None) and test datasets for ``name``, transformed.

    The training set is cut to its first ``limit_train`` images (SyntheticShapes: only that
    many are generated), then ``val_split`` of it
    goes to validation (``random_split`` with ``split_seed``). Every split is normalised
    with the dataset's statistics; the training split is also augmented when ``augment``
    is True (None: the dataset's default, random crop and flip for CIFAR-10 only).

    Raises
    ------
    FileNotFoundError, ValueError, RuntimeError
        From the dataset when its files are missing, damaged or cannot be downloaded.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    spec = DATASETS[name]
    root = default_data_dir() if root is None else root
    train = _load(name, root, True, download, limit_train)
    test = _load(name, root, False, download, limit_test)
    if limit_train is not None:
        train = fcdata.Subset(train, np.arange(min(int(limit_train), len(train))))
    if limit_test is not None:
        test = fcdata.Subset(test, np.arange(min(int(limit_test), len(test))))
    val = None
    if val_split:
        if not 0 < val_split < 1:
            raise ValueError(f"expected val_split in [0, 1), got {val_split}")
        n_val = max(1, int(round(val_split * len(train))))
        train, val = fcdata.random_split(train, [len(train) - n_val, n_val], seed=split_seed)
    normalize = T.Normalize(spec.mean, spec.std)
    if augment is None:
        augment = spec.augments_by_default
    steps = []
    if augment:
        steps.append(T.RandomCrop(spec.size, padding=spec.augment_padding or 2))
        if spec.augment_flip:
            steps.append(T.RandomHorizontalFlip())
    train_tf = T.Compose(steps + [normalize])
    return (Transformed(train, train_tf),
            None if val is None else Transformed(val, normalize),
            Transformed(test, normalize))


def build_model(name, dataset):
    """Model ``name`` with the input channels, size and class count of ``dataset``."""
    spec = DATASETS[dataset]
    if name == "lenet5":
        return models.lenet5(num_classes=spec.num_classes, in_channels=spec.channels,
                             input_size=spec.size)
    if name in ("resnet20", "resnet18", "mobilenet_small"):
        return models.get_model(name, num_classes=spec.num_classes, in_channels=spec.channels)
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


def build_optimizer(name, params, lr=None, momentum=0.9, weight_decay=None):
    """SGD (with ``momentum``), Adam or AdamW; ``lr`` None takes ``DEFAULT_LR[name]``,
    ``weight_decay`` None takes 0 (AdamW: PyTorch's default 0.01)."""
    lr = DEFAULT_LR[name] if lr is None else lr
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum,
                         weight_decay=weight_decay or 0.0)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay or 0.0)
    if name == "adamw":
        return optim.AdamW(params, lr=lr,
                           weight_decay=0.01 if weight_decay is None else weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")


def build_scheduler(name, optimizer, epochs, steps_per_epoch):
    """(scheduler or None, "epoch" or "batch": when it steps).

    ``step``: x0.1 every ``max(1, epochs // 3)`` epochs; ``cosine``: to 0 over ``epochs``;
    ``onecycle``: peak at the optimiser's learning rate, over every batch of the run.
    """
    sched = optim.lr_scheduler
    if name in (None, "none"):
        return None, "epoch"
    if name == "step":
        return sched.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1), "epoch"
    if name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=max(1, epochs)), "epoch"
    if name == "onecycle":
        lr = optimizer.param_groups[0]["lr"]
        return sched.OneCycleLR(optimizer, max_lr=lr,
                                total_steps=max(1, epochs * steps_per_epoch)), "batch"
    raise ValueError(f"unknown scheduler {name!r}; expected one of {SCHEDULERS}")


def count_parameters(model):
    return int(sum(math.prod(p.shape) for p in model.parameters()))
