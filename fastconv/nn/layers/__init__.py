"""The layers of ``fastconv.nn``, one file per family; each ``forward`` is one
``fastconv.functional`` call."""
from .activation import ELU, LeakyReLU, LogSoftmax, PReLU, ReLU, Sigmoid, Softmax, Tanh
from .conv import Conv2d, ConvTranspose2d, DepthwiseSeparableConv2d
from .linear import Dropout, Flatten, Identity, Linear
from .loss import CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from .normalization import BatchNorm2d
from .pooling import (SPP, AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, LPPool2d,
                      MaxPool2d)
from .upsampling import PixelShuffle, PixelUnshuffle, Upsample

__all__ = ["Conv2d", "ConvTranspose2d", "DepthwiseSeparableConv2d", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "LPPool2d", "SPP", "BatchNorm2d",
           "Linear", "Flatten", "Identity", "Dropout", "ReLU", "LeakyReLU", "PReLU", "ELU",
           "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Upsample", "PixelShuffle",
           "PixelUnshuffle", "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss"]
