"""Regression tests for kernel bugs the fuzzer (bench/fuzz.py) found, now fixed. A bug found
and not yet fixed gets a strict xfail here and an entry in ``KNOWN_BUGS`` of
``bench/fuzz_ops.py`` (the quick fuzz test skips those cases meanwhile); the fix removes both.

Each compares ``algorithm="im2col"`` with ``fastconv.reference`` and with the direct kernel,
which is right in both cases.
"""
import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F
import fastconv.reference as R


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = fc.get_num_threads()
    yield
    fc.set_num_threads(threads)


def _transposed_grads(algorithm):
    rng = np.random.default_rng(0)
    x = fc.tensor(rng.standard_normal((2, 3, 4, 5)), requires_grad=True)
    w = fc.tensor(rng.standard_normal((3, 2, 1, 1)), requires_grad=True)
    y = F.conv_transpose2d(x, w, stride=1, output_padding=(1, 0), dilation=2,
                           algorithm=algorithm)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    return x, w, gy


def test_conv_transpose2d_1x1_with_output_padding_gradients():
    """1x1 kernel, stride 1, output_padding 1 (allowed: smaller than the dilation): the input
    gradient is the im2col forward into an output smaller than the conv's natural one, the
    weight gradient its backward_weight; both read the wrong pixels (``direct_cols`` in
    src/_conv_geometry.pxd does not require OH == H and OW == W)."""
    x, w, gy = _transposed_grads("direct")
    args = (1, 0, (1, 0), 1, 2)
    assert np.allclose(x.grad, R.conv_transpose2d_backward_input(gy, w.data, x.shape, *args))
    x, w, gy = _transposed_grads("im2col")
    np.testing.assert_allclose(x.grad, R.conv_transpose2d_backward_input(gy, w.data, x.shape,
                                                                         *args), atol=1e-9)
    np.testing.assert_allclose(w.grad, R.conv_transpose2d_backward_weight(x.data, gy, w.shape,
                                                                          *args), atol=1e-9)


@pytest.mark.parametrize("kernel, dilation", [((2, 2), 1), ((1, 2), 1), ((4, 4), 1),
                                              ((2, 2), 3)])
def test_conv2d_same_padding_even_kernel(kernel, dilation):
    """padding='same' with an odd dilation * (kernel - 1) pads one more pixel right/bottom
    than left/top, which the kernels add by index bounds; the row-offset path instead reads
    the next padded row for the last output column, and past the padded image (uninitialised
    scratch memory: up to 1e295 in a fresh process) for the last output row."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 25, 26))
    w = rng.standard_normal((4, 3) + kernel)
    # PyTorch's "same": total padding d * (k - 1), the extra pixel right/bottom
    total = [dilation * (k - 1) for k in kernel]
    pad = [(t + 1) // 2 for t in total]
    crop = [p - t // 2 for p, t in zip(pad, total)]
    want = R.conv2d(x, w, None, 1, pad, dilation)[:, :, crop[0]:crop[0] + 25,
                                                  crop[1]:crop[1] + 26]
    same = dict(padding="same", dilation=dilation)
    assert np.allclose(F.conv2d(x, w, **same, algorithm="direct").data, want)
    # what the path reads past the padded image is whatever an earlier call left in the
    # thread's scratch buffer: leave large values there, so that the result does not depend
    # on the tests that ran before
    fc.set_num_threads(1)
    F.conv2d(np.full((1, 3, 40, 40), 1e3), np.ones((4, 3, 3, 3)), padding=1,
             algorithm="im2col")
    np.testing.assert_allclose(F.conv2d(x, w, **same, algorithm="im2col").data, want,
                               atol=1e-9)
