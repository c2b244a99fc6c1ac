import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from timm_pushpull.layers import PushPull2d, convert_to_pushpull, pushpull_targets


def test_stage1_targets_follow_the_papers_first_block():
    # ResNet-50: stem + only the middle 3x3 of each first-stage bottleneck
    assert pushpull_targets(timm.create_model("resnet50"), "stage1") == [
        "conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2",
    ]  # fmt: skip
    # ResNet-18: stem + both 3x3 convs of every first-stage block
    assert pushpull_targets(timm.create_model("resnet18"), "stage1") == [
        "conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2",
    ]  # fmt: skip


def test_conversion_keeps_weights_and_only_renames_keys():
    model = timm.create_model("resnet18", num_classes=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    convert_to_pushpull(model, "stage1", pull_mode="fast")
    after = model.state_dict()
    renamed = {k.replace(".push.", "."): v for k, v in after.items()}
    assert renamed.keys() == before.keys()
    for key, value in before.items():
        torch.testing.assert_close(renamed[key], value)
    assert isinstance(model.conv1, PushPull2d) and model.conv1.pull_mode == "fast"
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4)


def test_converted_layer_computes_push_pull_of_the_original_conv():
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=True), nn.ReLU())
    conv = model[0]
    weight, bias = conv.weight.detach().clone(), conv.bias.detach().clone()
    convert_to_pushpull(model, ["0"], alpha=0.7)
    x = torch.randn(2, 3, 9, 9)
    pull_kernel = -F.interpolate(weight, size=(7, 7), mode="bilinear", align_corners=True)
    expected = F.relu(F.conv2d(x, weight, bias, padding=1)) - 0.7 * F.relu(
        F.conv2d(x, pull_kernel, -bias, padding=3)
    )
    torch.testing.assert_close(model[0](x), expected)


def test_bad_scope():
    model = timm.create_model("resnet18")
    with pytest.raises(ValueError, match="scope must be one of"):
        convert_to_pushpull(model, "stage9")
    with pytest.raises(ValueError, match="not convs: \\['bn1'\\]"):
        convert_to_pushpull(model, ["conv1", "bn1"])
