"""Residual networks: ``resnet18`` (the classic ImageNet design, torchvision's key names)
and ``resnet20`` (the CIFAR design of He et al., 2016, 16/32/64 channels)."""
from .. import functional as F
from .. import nn
from ..nn.layers.fused import batch_norm_relu_modules, relu_of_sum

__all__ = ["BasicBlock", "ResNet", "resnet18", "resnet20", "init_conv_bn"]


def init_conv_bn(model):
    """torchvision's ResNet initialisation: conv weights kaiming-normal (fan_out, relu),
    BatchNorm weight 1 and bias 0; Linear keeps PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
    return model


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm, with ReLU between and after the residual addition.

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, where the shortcut is the
    identity, or a 1x1 strided conv + BatchNorm projection (``downsample.0``/
    ``downsample.1``, "option B") when the stride or the channel count changes.
    Key names are torchvision's.
    """

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        self.stride = stride

    def forward(self, x):
        out = batch_norm_relu_modules(self.bn1, self.relu, self.conv1(x))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return relu_of_sum(self.relu, out, identity)


class ResNet(nn.Module):
    """A ResNet of :class:`BasicBlock` stages.

    Parameters
    ----------
    layers : sequence of int
        Blocks per stage (the first block of every stage but the first has stride 2).
    widths : sequence of int
        Channels per stage.
    num_classes, in_channels : int
    stem : "imagenet" or "cifar"
        "imagenet": 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max pool (``maxpool``);
        "cifar": 3x3 stride-1 conv, BN, ReLU.

    Children: ``conv1``, ``bn1``, ``relu``, [``maxpool``], ``layer1`` ... ``layerK``,
    ``avgpool`` (adaptive, 1x1), ``fc``.
    """

    def __init__(self, layers, widths, num_classes=10, in_channels=3, stem="imagenet"):
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"ResNet: expected stem 'imagenet' or 'cifar', got {stem!r}")
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        if stem == "imagenet":
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.stages = len(layers)
        in_planes = widths[0]
        for i, (blocks, planes) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2
            stage = nn.Sequential()
            for b in range(blocks):
                stage.append(BasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_planes, num_classes)
        init_conv_bn(self)

    def forward(self, x):
        x = batch_norm_relu_modules(self.bn1, self.relu, self.conv1(x))
        if "maxpool" in self._modules:
            x = self.maxpool(x)
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        x = F.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet18(num_classes=1000, in_channels=3):
    """ResNet-18: the ImageNet stem, 4 stages of 2 BasicBlocks (64/128/256/512), adaptive
    average pooling and a linear head; 11.7 M parameters for 1000 classes. Key names are
    torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``),
    so torchvision's weights converted to NumPy load. Works on small inputs too (28x28
    Fashion-MNIST with ``in_channels=1``: the last stage is 1x1).
    """
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels, "imagenet")


def resnet20(num_classes=10, in_channels=3):
    """ResNet-20 for 32x32 images (He et al., 2016, section 4.2): 3x3 stem conv to 16
    channels, 3 stages of 3 BasicBlocks with 16/32/64 channels (stride 2 at the start of
    stages 2 and 3, 1x1 projection shortcuts there), global average pooling, linear head.
    About 0.27 M parameters. Also fits 28x28 inputs (``in_channels=1`` for Fashion-MNIST).
    """
    return ResNet((3, 3, 3), (16, 32, 64), num_classes, in_channels, "cifar")
