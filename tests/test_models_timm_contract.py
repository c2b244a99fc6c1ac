"""The parts of timm's model contract that timm's own test suite checks (tests/timm_suite runs it).

Factory ``device``/``dtype`` kwargs, FX-traced models that TorchScript compiles, heads that follow
the model's train/eval mode, and LeNet-5's feature levels, pool size and unpooled head.
"""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models import create_feature_extractor, save_for_hf

import timm_pushpull  # noqa: F401  (registers the models)

SAMPLES = ["resnet20_pp", "wrn16_4_pp_b1", "densenet40_12_pp_b1", "lenet5_a_pp", "resnet18_pp"]


def _input(model: torch.nn.Module, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, *model.pretrained_cfg["input_size"])


@pytest.mark.parametrize("name", SAMPLES)
def test_factory_device_and_dtype_reach_every_tensor(name):
    model = timm.create_model(name, device="meta", dtype=torch.float64)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    float_tensors = {n: t for n, t in tensors.items() if t.is_floating_point()}
    assert {t.device.type for t in tensors.values()} == {"meta"}
    assert float_tensors and {t.dtype for t in float_tensors.values()} == {torch.float64}


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("resnet20", {}),
        ("resnet20_pp", {}),
        ("wrn16_4_pp_b1", {}),
        ("lenet5_a_pp", {}),  # a push-pull conv with a bias
        ("lenet5_a_pp", dict(pp_pull_mode="fast")),
    ],
)
def test_fx_traced_model_compiles_with_torchscript(name, kwargs):
    model = timm.create_model(name, **kwargs).eval()
    traced = create_feature_extractor(model, return_nodes={"fc": "logits"})
    scripted = torch.jit.script(traced)
    x = _input(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x)["logits"], model(x))


@pytest.mark.parametrize("name", SAMPLES)
def test_new_heads_follow_the_model_mode(name):
    model = timm.create_model(name).eval()
    model.reset_classifier(5)
    model.reset_classifier(0, "")
    model.reset_classifier(3, "avg")
    assert not any(m.training for m in model.modules())


def _lenet_taps_by_hand(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """C1 (conv-ReLU), S2 (2x2 max-pool), S4 (valid conv-ReLU, 2x2 max-pool), LeCun et al. 1998."""
    c1 = F.relu(model.conv1(x))
    s2 = F.max_pool2d(c1, 2)
    s4 = F.max_pool2d(F.relu(F.conv2d(s2, model.conv2.weight, model.conv2.bias)), 2)
    return [c1, s2, s4]


@pytest.mark.parametrize("name", ["lenet5_a", "lenet5_d_pp"])
def test_lenet_feature_levels_agree_everywhere(name):
    model = timm.create_model(name).eval()
    x = _input(model)
    c1, c2 = model.conv1.out_channels, model.conv2.out_channels
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [
        (c1, 1),
        (c1, 2),
        (c2, 4),
    ]
    with torch.no_grad():
        expected = _lenet_taps_by_hand(model, x)
        final, taps = model.forward_intermediates(x)
        for tap, reference in zip(taps, expected, strict=True):
            torch.testing.assert_close(tap, reference)
        torch.testing.assert_close(final, model.forward_features(x))
        torch.testing.assert_close(final, expected[-1])
        features = timm.create_model(name, features_only=True).eval()
        features.load_state_dict(model.state_dict(), strict=False)
        for got, reference in zip(features(x), expected, strict=True):
            torch.testing.assert_close(got, reference)
        for index in range(3):
            early = model.forward_intermediates(
                x, indices=[index], stop_early=True, intermediates_only=True
            )
            torch.testing.assert_close(early[0], expected[index])
            pruned = copy.deepcopy(model)
            assert pruned.prune_intermediate_layers([index]) == [index]
            torch.testing.assert_close(pruned.forward_features(x), expected[index])
            torch.testing.assert_close(pruned(x), expected[index])  # no head: unpooled features


def test_lenet_pool_size_and_unpooled_head():
    model = timm.create_model("lenet5_a").eval()
    x = _input(model)
    # 28 -> conv (pad 2) 28 -> pool 14 -> valid 5x5 conv 10 -> pool 5
    assert model.pretrained_cfg["pool_size"] == (5, 5)
    assert model.forward_features(x).shape == (2, 16, 5, 5)
    assert model(x).shape == (2, 10)  # the classic head: flatten, fc1, fc2, fc
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 64)
    unpooled = timm.create_model("lenet5_a", num_classes=0, global_pool="")
    assert unpooled(x).shape == (2, 16, 5, 5) and unpooled.head_hidden_size == 16
    model.reset_classifier(0, "")
    assert model(x).shape == (2, 16, 5, 5)
    model.reset_classifier(4, "avg")
    assert model(x).shape == (2, 4) and model.head_hidden_size == 64
    model.reset_classifier(4, "flatten")
    assert model.pre_logits.fc1.in_features == 16 * 5 * 5


def test_lenet_flatten_head_needs_the_full_network():
    model = timm.create_model("lenet5_a")
    model.prune_intermediate_layers([1])
    with pytest.raises(ValueError, match="global_pool='flatten'.*needs the full network"):
        model.reset_classifier(10, "flatten")


def test_lenet_heads_round_trip_through_timm_folders(tmp_path):
    for global_pool in ("flatten", "avg"):
        model = timm.create_model("lenet5_a_pp", global_pool=global_pool).eval()
        save_for_hf(model, tmp_path / global_pool, safe_serialization=True)
        reloaded = timm.create_model(f"local-dir:{tmp_path / global_pool}", pretrained=True)
        assert reloaded.global_pool.pool_type == global_pool
        x = _input(model)
        with torch.no_grad():
            torch.testing.assert_close(reloaded.eval()(x), model(x))
