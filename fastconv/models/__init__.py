"""Ready-made networks: ``lenet5``, ``resnet18``, ``resnet20``, ``mobilenet_small``,
``hourglass_autoencoder``; ``get_model(name, **kwargs)`` builds one by name.

>>> import fastconv as fc
>>> model = fc.models.resnet20(num_classes=10)
"""
from .hourglass import HourglassAutoencoder, hourglass_autoencoder
from .lenet import LeNet5, lenet5
from .mobilenet import DepthwiseSeparableBlock, MobileNetSmall, mobilenet_small
from .resnet import BasicBlock, ResNet, resnet18, resnet20

MODELS = {
    "lenet5": lenet5,
    "resnet18": resnet18,
    "resnet20": resnet20,
    "mobilenet_small": mobilenet_small,
    "hourglass_autoencoder": hourglass_autoencoder,
}


def get_model(name, **kwargs):
    """Build the model called ``name`` (a key of ``MODELS``) with ``kwargs``."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}") from None
    return factory(**kwargs)


__all__ = ["lenet5", "resnet18", "resnet20", "mobilenet_small", "hourglass_autoencoder",
           "get_model", "MODELS", "LeNet5", "ResNet", "BasicBlock", "MobileNetSmall",
           "DepthwiseSeparableBlock", "HourglassAutoencoder"]
