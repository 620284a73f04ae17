"""An hourglass (U-Net-like) convolutional autoencoder with additive skip connections."""
from collections import OrderedDict

from .. import functional as F
from .. import nn
from .resnet import init_conv_bn

__all__ = ["HourglassAutoencoder", "hourglass_autoencoder"]


def _conv_bn_relu(c_in, c_out, stride=1):
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)),
        ("bn", nn.BatchNorm2d(c_out)),
        ("relu", nn.ReLU()),
    ]))


class HourglassAutoencoder(nn.Module):
    """Encoder-decoder whose output has the input's shape (any H, W >= 2).

    ::

        enc0  conv-bn-relu  C -> b            H
        pool  max pool 2 (ceil mode)          H/2
        enc1  conv-bn-relu  b -> 2b           H/2
        enc2  conv-bn-relu  2b -> 4b, s 2     H/4     (strided conv)
        mid   conv-bn-relu  4b -> 4b          H/4
        up1   ConvTranspose2d 4b -> 2b, s 2   H/2  + enc1 (skip by addition)
        dec1  conv-bn-relu  2b -> 2b
        up0   ConvTranspose2d 2b -> b, s 2    H    + enc0 (skip by addition)
        dec0  conv-bn-relu  b -> b
        head  1x1 conv      b -> C            H    (linear output)

    Each transposed convolution is asked for the size of its skip tensor (``output_size``),
    so odd sizes come back exactly.
    """

    def __init__(self, in_channels=1, base=16):
        super().__init__()
        self.enc0 = _conv_bn_relu(in_channels, base)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.enc1 = _conv_bn_relu(base, 2 * base)
        self.enc2 = _conv_bn_relu(2 * base, 4 * base, stride=2)
        self.mid = _conv_bn_relu(4 * base, 4 * base)
        self.up1 = nn.ConvTranspose2d(4 * base, 2 * base, 3, stride=2, padding=1)
        self.dec1 = _conv_bn_relu(2 * base, 2 * base)
        self.up0 = nn.ConvTranspose2d(2 * base, base, 3, stride=2, padding=1)
        self.dec0 = _conv_bn_relu(base, base)
        self.head = nn.Conv2d(base, in_channels, 1)
        init_conv_bn(self)

    def forward(self, x):
        e0 = self.enc0(x)
        e1 = self.enc1(self.pool(e0))
        m = self.mid(self.enc2(e1))
        d1 = self.dec1(F.add(self.up1(m, output_size=e1.shape[-2:]), e1))
        d0 = self.dec0(F.add(self.up0(d1, output_size=e0.shape[-2:]), e0))
        return self.head(d0)


def hourglass_autoencoder(in_channels=1, base=16):
    """See :class:`HourglassAutoencoder`; e.g. for 28x28 or 32x32 images, trained with
    ``MSELoss`` against its input."""
    return HourglassAutoencoder(in_channels, base)
