"""A small MobileNet-v1-style network (Howard et al., 2017) for 32x32 images."""
from collections import OrderedDict

from .. import functional as F
from .. import nn
from ..nn.layers.fused import batch_norm_relu_modules
from .resnet import init_conv_bn

__all__ = ["DepthwiseSeparableBlock", "MobileNetSmall", "mobilenet_small"]


class DepthwiseSeparableBlock(nn.Sequential):
    """MobileNet-v1's block: 3x3 depthwise conv (groups = channels), BN, ReLU, 1x1 pointwise
    conv, BN, ReLU. Children: ``depthwise``, ``bn1``, ``relu1``, ``pointwise``, ``bn2``,
    ``relu2``."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(OrderedDict([
            ("depthwise", nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1,
                                    groups=in_channels, bias=False)),
            ("bn1", nn.BatchNorm2d(in_channels)),
            ("relu1", nn.ReLU()),
            ("pointwise", nn.Conv2d(in_channels, out_channels, 1, bias=False)),
            ("bn2", nn.BatchNorm2d(out_channels)),
            ("relu2", nn.ReLU()),
        ]))


class MobileNetSmall(nn.Module):
    """3x3 conv stem (32 channels) + BN + ReLU, then depthwise-separable blocks
    (64, s1), (128, s2), (128, s1), (256, s2), (256, s1), (512, s2), global average
    pooling and a linear head. For 32x32 input the last feature map is 512 x 4 x 4.
    Channel counts scale with ``width_mult``. Children: ``conv1``, ``bn1``, ``relu``,
    ``blocks`` (a Sequential of :class:`DepthwiseSeparableBlock`), ``avgpool``, ``fc``.
    """

    config = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))

    def __init__(self, num_classes=10, in_channels=3, width_mult=1.0):
        super().__init__()

        def width(c):
            return max(8, int(round(c * width_mult)))

        c = width(32)
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.blocks = nn.Sequential()
        for out, stride in self.config:
            self.blocks.append(DepthwiseSeparableBlock(c, width(out), stride))
            c = width(out)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_conv_bn(self)

    def forward(self, x):
        x = self.blocks(batch_norm_relu_modules(self.bn1, self.relu, self.conv1(x)))
        return self.fc(F.flatten(self.avgpool(x), 1))


def mobilenet_small(num_classes=10, in_channels=3, width_mult=1.0):
    """See :class:`MobileNetSmall` (0.27 M parameters at width 1, 10 classes)."""
    return MobileNetSmall(num_classes, in_channels, width_mult)
