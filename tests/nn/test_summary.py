"""fastconv.summary: per-leaf rows, parameter and MAC counts checked by hand, receptive
fields through sequential and residual paths, no side effects on the model."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import models, nn
from fastconv.summary import summary


def test_lenet5_counts_by_hand():
    lines = []
    layers, totals = summary(models.lenet5(), (1, 28, 28), print_fn=lines.append)
    rows = {r["name"]: r for r in layers}
    assert [r["name"] for r in layers] == ["conv1", "relu1", "pool1", "conv2", "relu2",
                                           "pool2", "flatten", "fc1", "relu3", "fc2",
                                           "relu4", "fc3"]
    # parameters: weights + biases
    assert rows["conv1"]["params"] == 6 * 1 * 5 * 5 + 6 == 156
    assert rows["conv2"]["params"] == 16 * 6 * 5 * 5 + 16 == 2416
    assert rows["fc1"]["params"] == 400 * 120 + 120 == 48120
    assert rows["fc2"]["params"] == 120 * 84 + 84 == 10164
    assert rows["fc3"]["params"] == 84 * 10 + 10 == 850
    assert totals["params"] == 156 + 2416 + 48120 + 10164 + 850 == 61706
    assert totals["trainable_params"] == 61706 and totals["non_trainable_params"] == 0
    # MACs: N * C_out * OH * OW * C_in * kH * kW for conv, in * out for linear
    assert rows["conv1"]["macs"] == 6 * 28 * 28 * 1 * 25 == 117600
    assert rows["conv2"]["macs"] == 16 * 10 * 10 * 6 * 25 == 240000
    assert rows["fc1"]["macs"] == 400 * 120
    assert rows["relu1"]["macs"] == rows["pool1"]["macs"] == 0
    assert totals["macs"] == 117600 + 240000 + 48000 + 10080 + 840 == 416520
    # shapes
    assert rows["pool2"]["output_shape"] == (1, 16, 5, 5)
    assert rows["flatten"]["output_shape"] == (1, 400)
    assert totals["output_shape"] == (1, 10) and totals["input_shape"] == (1, 1, 28, 28)
    # receptive field / jump: conv5 -> 5/1, pool2 -> 6/2, conv5 -> 6+4*2=14/2,
    # pool2 -> 16/4, flatten of 5x5 (global) -> 16 + 4*4 = 32 / 20
    assert [(rows[n]["rf"][0], rows[n]["jump"][0]) for n in
            ("conv1", "pool1", "conv2", "pool2", "flatten", "fc3")] == [
        (5, 1), (6, 2), (14, 2), (16, 4), (32, 20), (32, 20)]
    text = "\n".join(lines)
    assert "Total params: 61,706" in text and "Total MACs: 416,520" in text
    assert "conv1" in text and "[1, 6, 28, 28]" in text


def test_batch_shape_scales_macs_not_params():
    one = summary(models.lenet5(), (1, 28, 28), print_fn=None)
    four = summary(models.lenet5(), (4, 1, 28, 28), print_fn=None)
    assert four.totals["macs"] == 4 * one.totals["macs"]
    assert four.totals["params"] == one.totals["params"]
    assert four.layers[0]["output_shape"] == (4, 6, 28, 28)


def test_resnet20_residual_receptive_field_and_counts():
    s = summary(models.resnet20(), (3, 32, 32), print_fn=None)
    rows = {r["name"]: r for r in s.layers if r["name"] != "layer1.0.relu"}
    assert s.totals["params"] == 272474
    # block 1 of stage 2: main path 3x3 s2 then 3x3; shortcut 1x1 s2 from the block input
    assert rows["layer1.2.conv2"]["rf"] == (15, 15)
    assert rows["layer2.0.conv1"]["rf"] == (17, 17) and rows["layer2.0.conv1"]["jump"] == (2, 2)
    assert rows["layer2.0.conv2"]["rf"] == (21, 21)
    assert rows["layer2.0.downsample.0"]["rf"] == (15, 15)   # traced to the block input
    relu = [r for r in s.layers if r["name"] == "layer2.0.relu"]
    assert relu[-1]["rf"] == (21, 21)                         # max over the two branches
    assert rows["fc"]["macs"] == 64 * 10
    # conv MACs: stem 16*32*32*3*9
    assert rows["conv1"]["macs"] == 16 * 32 * 32 * 3 * 9
    # BatchNorm: one MAC per element
    assert rows["bn1"]["macs"] == 16 * 32 * 32


def test_summary_leaves_model_untouched_and_handles_fused_layers():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Dropout(),
                          nn.DepthwiseSeparableConv2d(8, 16, 3, stride=2, padding=1),
                          nn.ConvTranspose2d(16, 4, 2, stride=2), nn.SPP((1, 2)))
    model.train()
    before = model.state_dict()
    model[0].requires_grad_(False)
    s = summary(model, (3, 8, 8), print_fn=None)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k]), k
    assert not model._forward_hooks and not model[0]._forward_pre_hooks
    names = [r["name"] for r in s.layers]
    assert names == ["0", "1", "2", "3", "4", "5"]   # the fused conv is one leaf
    ds = s.layers[3]
    assert ds["params"] == 8 * 9 + 8 + 16 * 8 + 16
    assert ds["macs"] == 8 * 4 * 4 * 9 + 16 * 4 * 4 * 8
    assert ds["rf"] == (5, 5) and ds["jump"] == (2, 2)
    convt = s.layers[4]
    assert convt["macs"] == 16 * 4 * 4 * 4 * 2 * 2 and convt["jump"] == (1, 1)
    assert s.layers[5]["output_shape"] == (1, 4 * 5)
    assert s.totals["non_trainable_params"] == 3 * 8 * 9 + 8


def test_summary_dtype_and_print():
    s = summary(nn.Linear(4, 2).double(), (4,), print_fn=None)
    assert s.layers[0]["output_shape"] == (1, 2) and s.totals["macs"] == 8
    assert "Linear" in str(s)
    out = []
    summary(models.resnet20(in_channels=1), (1, 28, 28), print_fn=out.append)
    assert any("Total params: 272,186" in line for line in out)


def test_summary_under_no_grad_falls_back_to_sequential_order():
    with fc.no_grad():
        s = summary(models.lenet5(), (1, 28, 28), print_fn=None)
    assert s.layers[6]["rf"] == (32, 32)


def test_forward_hook_errors_do_not_leak_hooks():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError):
        summary(model, (5,), print_fn=None)
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks
