"""Every registered model: builds, runs, honours timm's model contract; push-pull and aa placement."""

import json
import pkgutil

import pytest
import timm
import torch
import torch.nn as nn
from safetensors.torch import save_file
from timm.models import create_feature_extractor, save_for_hf

import timm_pushpull  # noqa: F401  (registers the models)
from timm_pushpull.layers import BlurPool2d, MaxBlurPool2d, PushPull2d
from timm_pushpull.models import checkpoint_filter_fn

OUR_MODULES = ["cifar_resnet", "cifar_wrn", "cifar_densenet", "lenet", "imagenet_resnet_pp"]
CIFAR_RESNETS = [f"resnet{d}" for d in (20, 32, 44, 56, 110)]
WRNS = ["wrn16_4", "wrn16_8", "wrn16_10", "wrn28_1", "wrn28_4", "wrn28_8", "wrn28_10", "wrn40_2"]
DENSENETS = ["densenet40_12", "densenet100_12", "densenet100_24"]
PP_FAMILIES = [n + s for n in CIFAR_RESNETS + WRNS + DENSENETS for s in ("", "_pp", "_pp_b1")]
LENETS = [f"lenet5_{c}{s}" for c in "abcd" for s in ("", "_pp")]
IMAGENET = ["resnet18_pp", "resnet18_pp_b1", "resnet50_pp", "resnet50_pp_b1"]
ALL_MODELS = PP_FAMILIES + LENETS + IMAGENET

# one model per family, at a size each handles quickly
FAMILY_SAMPLES = {
    "resnet20_pp": 32,
    "wrn16_4_pp_b1": 32,
    "densenet40_12_pp": 32,
    "lenet5_a_pp": 28,
    "resnet18_pp_b1": 64,
}
CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)


def _input(model: nn.Module, size: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, model.pretrained_cfg["input_size"][0], size, size)


def _small_size(name: str) -> int:
    if name.startswith("lenet"):
        return 28  # flattening head: fixed input size
    return 64 if name in IMAGENET else 16


def _pushpull_layers(model: nn.Module) -> list[str]:
    return sorted(n for n, m in model.named_modules() if isinstance(m, PushPull2d))


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered_names_are_exactly_the_contract_and_clash_with_no_timm_model():
    assert sorted(timm.list_models(module=OUR_MODULES)) == sorted(ALL_MODELS)
    timm_modules = {m.name for m in pkgutil.iter_modules(timm.models.__path__)}
    assert not timm_modules & set(OUR_MODULES)
    timm_names = set(timm.list_models(module=sorted(timm_modules)))
    assert not timm_names & set(ALL_MODELS)
    assert set(timm.list_models("*_pp*")) >= {n for n in ALL_MODELS if "_pp" in n}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_entrypoint_builds_runs_and_has_a_pretrained_cfg(name):
    model = timm.create_model(name).eval()
    cfg = model.pretrained_cfg
    in_chans, num_classes = cfg["input_size"][0], cfg["num_classes"]
    assert in_chans == (1 if name.startswith("lenet") else 3)
    assert len(cfg["mean"]) == len(cfg["std"]) == in_chans
    assert model.get_submodule(cfg["first_conv"]).weight.shape[1] == in_chans
    assert model.get_submodule(cfg["classifier"]) is model.get_classifier()
    assert cfg["license"] and cfg["paper_ids"]
    with torch.no_grad():
        out = model(_input(model, _small_size(name)))
    assert out.shape == (1, num_classes) and torch.isfinite(out).all()
    if name in PP_FAMILIES and not name.startswith("resnet"):
        assert cfg["mean"] == pytest.approx(CIFAR_MEAN) and cfg["std"] == pytest.approx(CIFAR_STD)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet20", []),
        ("resnet20_pp", ["conv1"]),
        ("resnet20_pp_b1", ["conv1"] + [f"layer1.{b}.conv{c}" for b in range(3) for c in (1, 2)]),
        ("wrn16_4_pp_b1", ["conv1"] + [f"layer1.{b}.conv{c}" for b in range(2) for c in (1, 2)]),
        ("densenet40_12_pp", ["features.conv0"]),
        (
            "densenet40_12_pp_b1",
            ["features.conv0"] + [f"features.denseblock1.denselayer{i}.conv2" for i in range(1, 7)],
        ),
        ("lenet5_c_pp", ["conv1"]),
        ("resnet18_pp", ["conv1"]),
        ("resnet18_pp_b1", ["conv1"] + [f"layer1.{b}.conv{c}" for b in range(2) for c in (1, 2)]),
        ("resnet50_pp_b1", ["conv1"] + [f"layer1.{b}.conv2" for b in range(3)]),
    ],
)
def test_pushpull_layers_sit_where_the_papers_put_them(name, expected):
    model = timm.create_model(name)
    assert _pushpull_layers(model) == sorted(expected)
    assert all(model.get_submodule(n).pull_scale == 2.0 for n in expected)


@pytest.mark.parametrize(
    "baseline, variants",
    [
        ("resnet20", ["resnet20_pp", "resnet20_pp_b1"]),
        ("wrn16_4", ["wrn16_4_pp", "wrn16_4_pp_b1"]),
        ("densenet40_12", ["densenet40_12_pp", "densenet40_12_pp_b1"]),
        ("lenet5_a", ["lenet5_a_pp"]),
        ("resnet18", ["resnet18_pp", "resnet18_pp_b1"]),
        ("resnet50", ["resnet50_pp", "resnet50_pp_b1"]),
    ],
)
def test_pushpull_adds_no_parameters(baseline, variants):
    expected = _num_params(timm.create_model(baseline))
    assert [_num_params(timm.create_model(v)) for v in variants] == [expected] * len(variants)


def test_learned_alpha_adds_one_parameter_per_output_channel():
    base = _num_params(timm.create_model("resnet20_pp_b1"))
    # stem 16 channels + 3 blocks x 2 convs x 16 channels
    assert (
        _num_params(timm.create_model("resnet20_pp_b1", pp_learn_alpha=True)) == base + 16 + 6 * 16
    )
    assert _num_params(timm.create_model("resnet20_pp_b1", pp_learn_alpha="scalar")) == base + 7


def test_released_models_parameter_counts():
    # the authors' checkpoints hold exactly these numbers of parameters (test_models_official loads them)
    assert _num_params(timm.create_model("resnet20")) == 272474
    assert _num_params(timm.create_model("densenet40_12_pp")) == 176122


@pytest.mark.parametrize("name, size", FAMILY_SAMPLES.items())
def test_features_only_and_out_indices(name, size):
    features = timm.create_model(name, features_only=True)
    maps = features(_input(features, size, batch=2))
    info = features.feature_info
    assert [m.shape[1] for m in maps] == info.channels()
    # LeNet: C1 28, S2 14, then the valid (unpadded) second conv: 14 -> 10 -> pool 5
    expected = [28, 14, 5] if name.startswith("lenet") else [size // r for r in info.reduction()]
    assert [m.shape[-1] for m in maps] == expected
    last = timm.create_model(name, features_only=True, out_indices=(-1,))
    assert last.feature_info.channels() == info.channels()[-1:]


@pytest.mark.parametrize("name, size", FAMILY_SAMPLES.items())
def test_forward_intermediates_match_features_and_forward(name, size):
    model = timm.create_model(name).eval()
    x = _input(model, size, batch=2)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        assert [t.shape[1] for t in intermediates] == [f["num_chs"] for f in model.feature_info]
        torch.testing.assert_close(model.forward_head(final), model(x))
        torch.testing.assert_close(model.forward_features(x), final)
        only_first = model.forward_intermediates(
            x, indices=[0], stop_early=True, intermediates_only=True
        )
        torch.testing.assert_close(only_first[0], intermediates[0])
        pre_logits = model.forward_head(final, pre_logits=True)
        assert pre_logits.shape == (2, model.head_hidden_size)
        kept = model.prune_intermediate_layers(indices=[1], prune_head=True)
        assert kept == [1]
        torch.testing.assert_close(
            model.forward_intermediates(x, indices=[1], intermediates_only=True)[0],
            intermediates[1],
        )


@pytest.mark.parametrize("name, size", FAMILY_SAMPLES.items())
def test_classifier_reset_grouping_and_grad_checkpointing(name, size):
    model = timm.create_model(name).eval()
    x = _input(model, size)
    for coarse in (False, True):
        groups = timm.models.group_parameters(model, model.group_matcher(coarse))
        assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))
    model(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for expected, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, expected)
    model.reset_classifier(3)
    assert model(x).shape == (1, 3)
    model.reset_classifier(0)
    assert model(x).shape == (1, model.head_hidden_size)


def test_cifar_data_config_is_the_released_normalisation():
    config = timm.data.resolve_data_config({}, model=timm.create_model("resnet56_pp"))
    assert config["input_size"] == (3, 32, 32)
    assert config["mean"] == pytest.approx(CIFAR_MEAN) and config["std"] == pytest.approx(CIFAR_STD)
    assert config["crop_pct"] == 1.0


@pytest.mark.parametrize("name", ["resnet20", "resnet20_pp_b1", "lenet5_a_pp"])
def test_fashion_mnist_demo_cfg_is_greyscale(name):
    model = timm.create_model(f"{name}.demo_fmnist").eval()
    config = timm.data.resolve_data_config({}, model=model)
    assert config["input_size"] == (1, 28, 28) and len(config["mean"]) == 1
    assert model.in_chans == 1  # timm builds the tag's input channels
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    # where the demo's greyscale weights are the only ones, the CIFAR cfg stays the default
    if not name.startswith("lenet"):
        assert timm.create_model(name).pretrained_cfg["input_size"] == (3, 32, 32)


def test_in_chans_1_accepted():
    model = timm.create_model("densenet40_12_pp", in_chans=1)
    assert model(torch.randn(1, 1, 16, 16)).shape == (1, 10)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize(
    "name, size", [("resnet20_pp", 32), ("densenet40_12_pp_b1", 32), ("lenet5_a_pp", 28)]
)
def test_torchscript_exact_pull_matches_eager(name, size):
    model = timm.create_model(name).eval()
    x = _input(model, size, batch=2)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


def test_fx_feature_extraction_of_a_pushpull_model():
    model = timm.create_model("densenet40_12_pp").eval()
    x = torch.randn(1, 3, 32, 32)
    extractor = create_feature_extractor(model, return_nodes={"features.denseblock2": "block2"})
    with torch.no_grad():
        _, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(extractor(x)["block2"], intermediates[2])
    fx_features = timm.create_model("resnet20_pp", features_only=True, feature_cls="fx")
    assert [t.shape[1] for t in fx_features(x)] == [16, 16, 32, 64]
    # anti-aliased: the blur pool is a leaf of the traced graph
    blurred = timm.create_model("resnet20_pp", aa="bin3").eval()
    extractor = create_feature_extractor(blurred, return_nodes={"layer3": "layer3"})
    with torch.no_grad():
        _, intermediates = blurred.forward_intermediates(x)
        torch.testing.assert_close(extractor(x)["layer3"], intermediates[-1])


@pytest.mark.parametrize(
    "name, aa, size",
    [
        ("resnet20_pp", "bin5", 32),
        ("wrn16_4_pp", "tri3", 32),
        ("densenet40_12_pp_b1", "rect2", 32),
        ("lenet5_a_pp", "bin3", 28),
        ("resnet18_pp_b1", "bin3", 64),
    ],
)
def test_antialiased_variants_keep_the_feature_shapes(name, aa, size):
    plain = timm.create_model(name, features_only=True)
    blurred = timm.create_model(name, features_only=True, aa=aa)
    x = _input(plain, size)
    assert [t.shape for t in blurred(x)] == [t.shape for t in plain(x)]
    model = timm.create_model(name, aa=aa)
    assert any(isinstance(m, (BlurPool2d, MaxBlurPool2d)) for m in model.modules())
    # every downsampling goes through a blur; only Zhang's ImageNet stem conv stays strided
    strided = [
        n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)
    ]
    assert strided == (["conv1.push"] if name == "resnet18_pp_b1" else [])


def test_cifar_resnet_blur_placement():
    block = timm.create_model("resnet20", aa="bin3").layer2[0]
    assert isinstance(block.aa, BlurPool2d) and block.aa.stride == 2 and block.aa.filter_size == 3
    assert block.conv1.stride == (1, 1) and block.downsample[0].stride == (1, 1)
    timm_block = timm.create_model("resnet50_pp", aa="bin3").layer2[0]
    assert isinstance(timm_block.aa, BlurPool2d)  # Zhang: after the stride-1 3x3 conv
    shortcut = timm_block.downsample[0]  # Zhang: blurred projection shortcut, in timm's layout
    assert isinstance(shortcut.aa, BlurPool2d) and shortcut.aa.stride == 2
    assert shortcut.stride == (1, 1) and isinstance(timm_block.downsample[1], nn.BatchNorm2d)


def test_timm_resnet50_state_dict_converts_by_renaming_only():
    timm_state = timm.create_model("resnet50").state_dict()
    model = timm.create_model("resnet50_pp_b1")
    converted = checkpoint_filter_fn(timm_state, model)
    renamed = {"conv1.weight"} | {f"layer1.{b}.conv2.weight" for b in range(3)}
    assert set(timm_state) - set(converted) == renamed
    assert set(converted) - set(timm_state) == {k.replace("weight", "push.weight") for k in renamed}
    model.load_state_dict(converted, strict=True)
    torch.testing.assert_close(model.layer1[0].conv2.weight, timm_state["layer1.0.conv2.weight"])


def test_pushpull_kwargs_are_recorded_and_rebuild_the_model(tmp_path):
    kwargs = dict(pp_pull_scale=1.5, pp_scales="1.5,2,3", pp_attention="se", pp_learn_alpha="scalar",
                  pp_rectify=False, pp_pull_mode="exact", aa="bin3", num_classes=7)  # fmt: skip
    model = timm.create_model("resnet20_pp", **kwargs).eval()
    layer = model.conv1
    assert (
        layer.pull_scale == (1.5, 2.0, 3.0) and not layer.rectify and layer.attention_type == "se"
    )
    save_for_hf(model, tmp_path, safe_serialization=True)
    model_args = json.loads((tmp_path / "config.json").read_text())["model_args"]
    assert {k: model_args[k] for k in kwargs} == kwargs
    reloaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x))


def test_deprecated_pushpull_names_still_build_the_same_model(tmp_path):
    deprecated = "pp_h is deprecated, use pp_pull_scale|pp_mode is deprecated, use pp_pull_mode"
    with pytest.warns(DeprecationWarning, match=deprecated):
        old = timm.create_model("lenet5_a_pp", pp_h=3, pp_mode="fast")
    new = timm.create_model("lenet5_a_pp", pp_pull_scale=3, pp_pull_mode="fast")
    assert (
        (old.conv1.pull_scale, old.conv1.pull_mode) == (new.conv1.pull_scale, "fast") == (3, "fast")
    )
    # a folder written with the old names (by an earlier version, e.g. a running study) reloads
    save_for_hf(old, tmp_path, safe_serialization=True)
    with pytest.warns(DeprecationWarning, match=deprecated):
        reloaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True)
    assert (reloaded.conv1.pull_scale, reloaded.conv1.pull_mode) == (3, "fast")
    with pytest.raises(
        TypeError, match="pp_h and pp_pull_scale are the same; give only pp_pull_scale"
    ):
        timm.create_model("resnet50_pp", pp_h=2, pp_pull_scale=3)


def test_pp_scales_as_a_sequence():
    assert timm.create_model("lenet5_a_pp", pp_scales=[2, 3]).conv1.pull_scale == (2.0, 3.0)


@pytest.mark.parametrize(
    "name, kwargs, error, match",
    [
        ("resnet20", dict(pp_scope="all"), ValueError, "pp_scope must be one of"),
        ("resnet20", dict(pp_pull_scale=1.5), ValueError, r"\['pp_pull_scale'\] only apply to"),
        ("resnet20_pp", dict(pp_scales="2,x"), ValueError, "pp_scales must be"),
        ("resnet20_pp", dict(pp_pull_mode="quick"), ValueError, "pull_mode must be one of"),
        ("resnet20_pp", dict(aa="gauss3"), ValueError, "blur spec"),
        ("densenet40_12", dict(depth=41), ValueError, "depth must be 6n"),
        ("lenet5_a_pp", dict(pp_scope="stage1"), ValueError, "pp_scope None or 'stem'"),
        ("resnet50_pp", dict(pp_scope="everything"), ValueError, "pp_scope must be one of"),
        ("wrn16_4_pp", dict(pp_bogus=1), TypeError, "pp_bogus"),
        ("resnet50_pp", dict(pp_bogus=1), TypeError, r"\['pp_bogus'\]; push-pull arguments are"),
    ],
)
def test_bad_model_arguments_raise_clear_errors(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        timm.create_model(name, **kwargs)


def test_pretrained_timm_resnet18_weights_load_into_the_pushpull_model(tmp_path):
    timm_model = timm.create_model("resnet18")
    save_file(timm_model.state_dict(), tmp_path / "resnet18.safetensors")
    model = timm.create_model(
        "resnet18_pp_b1",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(tmp_path / "resnet18.safetensors")),
    )
    torch.testing.assert_close(model.conv1.push.weight, timm_model.conv1.weight)
    torch.testing.assert_close(model.layer1[1].conv2.push.weight, timm_model.layer1[1].conv2.weight)
    torch.testing.assert_close(model.fc.weight, timm_model.fc.weight)


def _timm_keys_onto_pushpull(timm_state, model_state):
    """Each timm key and the key of ``model_state`` it must land on (its push kernel, if renamed)."""
    return {
        k: k if k in model_state else k.removesuffix("weight") + "push.weight" for k in timm_state
    }


@pytest.mark.parametrize("name", IMAGENET)
@pytest.mark.parametrize("aa", [None, "bin3", "rect2"])
def test_timm_imagenet_weights_load_into_every_variant(name, aa, tmp_path):
    """timm's resnet18/resnet50 weights (issue 26: they failed on the aa shortcut) through
    pretrained=True with a file, timm's own loading path: every tensor lands on its key."""
    timm_model = timm.create_model(name.split("_")[0], num_classes=1000)
    file = tmp_path / "timm.safetensors"
    save_file(timm_model.state_dict(), file)
    model = timm.create_model(
        name, aa=aa, pretrained=True, pretrained_cfg_overlay=dict(file=str(file))
    )
    state = model.state_dict()
    onto = _timm_keys_onto_pushpull(timm_model.state_dict(), state)
    assert set(onto.values()) == set(state)  # nothing left at its random initialisation
    for timm_key, key in onto.items():
        assert torch.equal(state[key], timm_model.state_dict()[timm_key]), key
    pushed = {k for k, v in onto.items() if k != v}
    expected = {"conv1.weight"}
    if name.endswith("_b1"):
        convs = ("conv1", "conv2") if name.startswith("resnet18") else ("conv2",)
        blocks = 2 if name.startswith("resnet18") else 3
        expected |= {f"layer1.{b}.{c}.weight" for b in range(blocks) for c in convs}
    assert pushed == expected


def test_timm_aa_resnet_keys_are_ours(tmp_path):
    """Same keys as timm's resnet50 with aa_layer (but the push kernels): its weights load, and
    ours load into it."""
    from timm_pushpull.layers import blur_pool_class

    timm_aa = timm.create_model("resnet50", aa_layer=blur_pool_class("bin3"))
    ours = timm.create_model("resnet50_pp_b1", aa="bin3")
    onto = _timm_keys_onto_pushpull(timm_aa.state_dict(), ours.state_dict())
    assert set(onto.values()) == set(ours.state_dict())
    back = {k: ours.state_dict()[v] for k, v in onto.items()}
    timm_aa.load_state_dict(back, strict=True)


def _zhang_shortcuts(model: nn.Module) -> nn.Module:
    """timm's anti-aliased ResNet with Zhang's blurred shortcut built by hand: blur-pool module,
    then the 1x1 conv at stride 1, then BN (three entries, as timm-pushpull 0.1.0 stored it)."""
    from timm_pushpull.layers import blur_pool_class

    for block in (model.layer2[0], model.layer3[0], model.layer4[0]):
        conv, norm = block.downsample
        conv.stride = (1, 1)
        blur = blur_pool_class("bin3")(channels=conv.in_channels, stride=2)
        block.downsample = nn.Sequential(blur, conv, norm)
    return model


def test_antialiased_model_computes_zhangs_shortcut_from_timm_weights():
    from timm.models.resnet import BasicBlock

    from timm_pushpull.layers import blur_pool_class
    from timm_pushpull.models import create_pushpull_resnet

    reference = _zhang_shortcuts(timm.create_model("resnet18", aa_layer=blur_pool_class("bin3")))
    timm_state = timm.create_model("resnet18", aa_layer=blur_pool_class("bin3")).state_dict()
    reference.load_state_dict(
        {k.replace("downsample.1.", "downsample.2.").replace("downsample.0.", "downsample.1."): v
         for k, v in timm_state.items()}
    )  # fmt: skip
    ours = create_pushpull_resnet(None, "bin3", block=BasicBlock, layers=(2, 2, 2, 2))
    ours.load_state_dict(checkpoint_filter_fn(timm_state, ours), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), rtol=0, atol=1e-6)


def test_three_entry_shortcut_checkpoints_still_load(tmp_path):
    """A resnet18_pp with aa saved before the shortcut took timm's layout loads unchanged."""
    old = timm.create_model("resnet18_pp", aa="bin3")
    for block in (old.layer2[0], old.layer3[0], old.layer4[0]):
        projection, norm = block.downsample
        conv = nn.Conv2d(projection.in_channels, projection.out_channels, 1, bias=False)
        conv.weight = projection.weight
        block.downsample = nn.Sequential(projection.aa, conv, norm)
    assert "layer2.0.downsample.2.running_var" in old.state_dict()
    save_file(old.state_dict(), tmp_path / "old.safetensors")
    new = timm.create_model(
        "resnet18_pp", aa="bin3", pretrained=True,
        pretrained_cfg_overlay=dict(file=str(tmp_path / "old.safetensors")),
    )  # fmt: skip
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(new.eval()(x), old.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["resnet20_pp", "wrn16_4_pp_b1"])
@pytest.mark.parametrize("arg", ["drop_path_rate", "drop_block_rate"])
def test_residual_families_take_timms_drop_rates(name, arg):
    """issue 26: timm's train.py --drop-path/--drop-block passed these and got a TypeError."""
    plain = timm.create_model(name)
    torch.manual_seed(0)
    zero = timm.create_model(name, **{arg: 0.0})
    dropped = timm.create_model(name, **{arg: 0.5})
    dropped.load_state_dict(plain.state_dict(), strict=True)  # no new weights either way
    torch.manual_seed(0)
    assert all(
        torch.equal(a, b) for a, b in zip(zero.state_dict().values(), plain.state_dict().values())
    )
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(dropped.eval()(x), plain.eval()(x))  # nothing dropped in eval
        plain_train = plain.train()(x)
        assert torch.equal(zero.train()(x), plain_train)  # 0 is the model as before
        assert not torch.allclose(dropped.train()(x), plain_train)


def test_stochastic_depth_rises_linearly_and_skips_whole_branches():
    model = timm.create_model("resnet20", drop_path_rate=0.2)
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3) for b in stage]
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in blocks]
    # Huang et al.'s linear rule as timm applies it: 0 for the first of 9 blocks, 0.2 for the last
    assert rates == pytest.approx([0.2 * k / 8 for k in range(9)])
    # a branch dropped for every sample leaves the block relu(shortcut) = its (post-ReLU) input
    last = timm.create_model("resnet20", drop_path_rate=0.999999).layer3[2].train()
    x = torch.rand(4, 64, 8, 8)
    with torch.no_grad():
        assert torch.equal(last(x.clone()), x)


def test_drop_block_sits_where_timms_resnet_puts_it():
    from timm.layers import DropBlock2d

    model = timm.create_model("wrn16_4", drop_block_rate=0.1)
    found = {n.split(".")[0]: m for n, m in model.named_modules() if isinstance(m, DropBlock2d)}
    assert set(found) == {"layer2", "layer3"}  # the last two stages, none in the first
    assert (found["layer2"].block_size, found["layer2"].gamma_scale) == (5, 0.25)
    assert (found["layer3"].block_size, found["layer3"].gamma_scale) == (3, 1.0)


@pytest.mark.parametrize("name", ["densenet40_12_pp", "lenet5_a_pp"])
@pytest.mark.parametrize("arg", ["drop_path_rate", "drop_block_rate"])
def test_families_without_residual_blocks_refuse_drop_rates(name, arg):
    timm.create_model(name, **{arg: 0.0})  # what timm's train.py may pass: accepted
    with pytest.raises(ValueError, match=rf"{arg}=0.1 \(allowed: 0\): .* use drop_rate"):
        timm.create_model(name, **{arg: 0.1})


@pytest.mark.parametrize("value", [-0.1, 1.0, "0.1", True])
def test_drop_rates_out_of_range_are_refused(value):
    with pytest.raises(ValueError, match=r"drop_path_rate must be a number in \[0, 1\)"):
        timm.create_model("resnet20", drop_path_rate=value)


def test_timm_train_py_model_arguments_with_drop_path():
    # the call of timm's train.py with --drop-path 0.1 (None for the options left unset)
    kwargs = dict(in_chans=3, num_classes=10, drop_rate=0.0, drop_path_rate=0.1,
                  drop_block_rate=None, global_pool=None, bn_momentum=None, bn_eps=None)  # fmt: skip
    model = timm.create_model("resnet20_pp", pretrained=False, **kwargs)
    assert model.layer3[2].drop_path.drop_prob == pytest.approx(0.1)
