"""LeNet-5 (LeCun et al., 1998) with ReLU and max pooling."""
from collections import OrderedDict

from .. import nn

__all__ = ["LeNet5", "lenet5"]


class LeNet5(nn.Sequential):
    """conv 5x5 -> 6, ReLU, max pool 2 / conv 5x5 -> 16, ReLU, max pool 2 / fc 120, ReLU /
    fc 84, ReLU / fc num_classes.

    For 28x28 input (MNIST) the first conv pads by 2, so the feature map is the classic
    16 x 5 x 5 = 400 of the original 32x32 design; other sizes use no padding and size
    ``fc1`` to fit. Children (and ``state_dict`` keys): ``conv1``, ``relu1``, ``pool1``,
    ``conv2``, ``relu2``, ``pool2``, ``flatten``, ``fc1``, ``relu3``, ``fc2``, ``relu4``,
    ``fc3``. 61,706 parameters for 10 classes and 1 input channel.
    """

    def __init__(self, num_classes=10, in_channels=1, input_size=28):
        padding = 2 if input_size == 28 else 0
        side = ((input_size + 2 * padding - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"lenet5: input_size {input_size} is too small (at least 16)")
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 6, 5, padding=padding)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(6, 16, 5)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(16 * side * side, 120)),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(120, 84)),
            ("relu4", nn.ReLU()),
            ("fc3", nn.Linear(84, num_classes)),
        ]))


def lenet5(num_classes=10, in_channels=1, input_size=28):
    """LeNet-5 for ``in_channels`` x ``input_size`` x ``input_size`` images (28: MNIST,
    Fashion-MNIST; 32: CIFAR-10 with ``in_channels=3``). See :class:`LeNet5`.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.models.lenet5()(fc.tensor(np.zeros((2, 1, 28, 28), np.float32))).shape
    (2, 10)
    """
    return LeNet5(num_classes, in_channels, input_size)
