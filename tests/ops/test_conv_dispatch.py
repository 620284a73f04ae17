"""select_conv_algorithm: a pure function of the geometry, tested on its own."""
import pytest

import fastconv as fc
from fastconv.functional._dispatch import (WINOGRAD_SIMD, ConvParams, is_depthwise,
                                           is_winograd, select_conv_algorithm)


def P(c_in, c_out, k=3, stride=1, padding=1, groups=1, h=16, dilation=1, itemsize=4):
    return ConvParams(8, c_in, h, h, c_out, k, k, (stride, stride), (padding, padding),
                      (dilation, dilation), groups, itemsize)


WINO = "winograd" if WINOGRAD_SIMD else "im2col"


@pytest.mark.parametrize("params, expected", [
    (P(64, 64, groups=64), "depthwise"),
    (P(32, 64, groups=32), "depthwise"),       # channel multiplier 2
    (P(64, 128, k=1, padding=0), "im2col"),    # pointwise: the kernel skips the column matrix
    (P(1, 6, k=5, padding=2), "im2col"),       # first layer: im2col measured faster
    (P(3, 64, k=7, stride=2, padding=3), "im2col"),
    (P(64, 64), WINO),                         # 3x3 stride 1 with enough channels
    (P(32, 64, padding=0), WINO),
    (P(256, 256, h=8), WINO),
    (P(32, 32), WINO),
    (P(16, 16), WINO),
    (P(16, 64), WINO),
    (P(8, 64), "im2col"),                      # too few channels: transforms dominate
    (P(64, 12), "im2col"),
    (P(64, 64, itemsize=8), "im2col"),         # float64: no SIMD Winograd kernel
    (P(64, 64, stride=2), "im2col"),
    (P(64, 64, dilation=2, padding=2), WINO),  # the dilated layer: 4 phases of the input
    (P(64, 64, dilation=2, padding=1), "im2col"),   # padding not a multiple of the dilation
    (P(64, 64, dilation=2, padding=2, h=15), "im2col"),
    (P(64, 64, groups=2), "im2col"),
])
def test_selection(params, expected):
    assert select_conv_algorithm(params, need_grad=True) == expected
    assert select_conv_algorithm(params, need_grad=False) == expected


def test_predicates():
    assert is_depthwise(P(8, 16, groups=8)) and not is_depthwise(P(8, 16, groups=2))
    assert not is_depthwise(P(1, 4, groups=1))
    assert is_winograd(P(1, 1, padding=0)) and is_winograd(P(8, 8, padding=3))
    assert not is_winograd(P(8, 8, k=5)) and not is_winograd(P(8, 8, groups=2))


def test_every_selected_algorithm_exists():
    assert set(fc.conv_algorithms()) >= {"direct", "im2col", "depthwise", "winograd"}
