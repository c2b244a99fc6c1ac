"""pytest plugin: timm's own model tests (``tests/test_models.py`` of timm's sdist) on our models.

``tests/timm_suite/run.sh`` fetches that file for the installed timm and runs it with
``-p tests.timm_suite.plugin``, so a timm upgrade that changes the model contract fails our CI.
The plugin imports ``timm_pushpull`` before timm's file is collected (its tests are parametrized
over ``timm.list_models()`` at import) and keeps only the tests of :data:`SAMPLE`: one model per
family and variant plus the three the README names, with all their pretrained tags.

In scope: every test of ``test_models.py`` parametrized over the registry (``list_models``), i.e.
the whole model contract: forward/backward, default cfgs (``device="meta"``, ``dtype=``, pool
size, heads), features (hooks, getter, FX), ``forward_intermediates``,
``prune_intermediate_layers``, TorchScript and FX + TorchScript. timm restricts the three
``forward_intermediates`` tests of :data:`FEAT_INTER_TESTS` to its own modules that implement the
API (``FEAT_INTER_FILTERS``); ours all implement it, so the plugin adds the sample to them.

Out of scope, deselected with the reason:

* tests on named timm models (``test_gcvit_batch_consistency``, ``test_model_inference`` on
  ``test_*`` ...): they check timm's own architectures, not the contract of ours;
* ``test_model_load_pretrained`` / ``test_model_features_pretrained``: download every
  ``timm.list_pretrained()`` weight from the Hub, and CI has no network. Our tags that the Hub
  does not hold are not in that list (see README, "Pretrained weights"); loading local weights
  is tested in ``tests/test_pretrained_tags.py`` and ``tests/test_hub.py``;
* ``test_prune_intermediate_layers_contract`` runs only on :data:`PRUNE_CONTRACT_SAMPLE` (timm
  keeps it out of its CI as slow; the large models would take minutes);
* timm's exclusions stay: e.g. TorchScript skips ``densenet*`` (``EXCLUDE_JIT_FILTERS``) and the
  ``*_non_std`` tests cover transformers, which none of ours match.
"""

import os

import pytest
import torch

import timm_pushpull  # noqa: F401  (registers the models before test_models.py lists them)

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # under -n 2 each worker already has a core

SAMPLE = (
    *("resnet20", "resnet20_pp", "resnet20_pp_b1"),  # CIFAR ResNet
    *("wrn16_4", "wrn16_4_pp", "wrn16_4_pp_b1"),  # Wide ResNet
    *("densenet40_12", "densenet40_12_pp", "densenet40_12_pp_b1"),  # DenseNet-BC
    *("lenet5_a", "lenet5_a_pp"),  # LeNet-5 (no stages: no _pp_b1)
    *("resnet18_pp", "resnet18_pp_b1"),  # ImageNet ResNet (timm's ResNet class)
    *("wrn28_10_pp", "densenet100_24_pp", "resnet50_pp_b1"),  # named in the README
)
FEAT_INTER_TESTS = (
    "test_model_forward_intermediates",
    "test_model_forward_intermediates_features",
    "test_prune_intermediate_layers_contract",
)
NETWORK_TESTS = (
    "test_model_inference",
    "test_model_load_pretrained",
    "test_model_features_pretrained",
)
# timm runs this one outside its CI (it prunes, runs and backpropagates at every feature level):
# here on the smallest model of each of our own families (the ImageNet ResNets are timm's class)
PRUNE_CONTRACT_TEST = "test_prune_intermediate_layers_contract"
PRUNE_CONTRACT_SAMPLE = ("resnet20_pp_b1", "wrn16_4_pp", "densenet40_12_pp_b1", "lenet5_a_pp")


def pytest_configure(config: pytest.Config) -> None:
    # timm registers its markers (base, cfg, features, ...) in its pyproject.toml, not shipped here
    config.addinivalue_line("filterwarnings", "ignore::pytest.PytestUnknownMarkWarning")


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Add the sample to the forward_intermediates tests timm limits to its own modules."""
    if metafunc.function.__name__ not in FEAT_INTER_TESTS:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        if mark.args and mark.args[0] == "model_name":
            names = mark.args[1]  # the list timm built with list_models(module=...)
            names.extend(name for name in SAMPLE if name not in names)  # filtered below


def _model_name(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("model_name") if callspec is not None else None
    return name.split(".")[0] if isinstance(name, str) else None


def _selected(item: pytest.Item) -> bool:
    name = _model_name(item)
    if item.originalname == PRUNE_CONTRACT_TEST:
        return name in PRUNE_CONTRACT_SAMPLE
    return name in SAMPLE and item.originalname not in NETWORK_TESTS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the registry-wide tests of the sample; fail if timm's file no longer reaches it."""
    keep = [item for item in items if _selected(item)]
    missing = sorted(set(SAMPLE) - {_model_name(item) for item in keep})
    if missing:
        raise pytest.UsageError(
            f"timm's test_models.py collected no test for {missing}: is timm_pushpull imported "
            f"before collection, and does timm still parametrize its tests over list_models()?"
        )
    kept = set(map(id, keep))
    config.hook.pytest_deselected(items=[item for item in items if id(item) not in kept])
    items[:] = keep
