import os
import re
from pathlib import Path

import pytest
import torch

from timm_pushpull import native
from timm_pushpull.robustness.frost import FROST_DIR_ENV

# Tiny tensors throughout: a second thread only adds oneDNN synchronisation, and under
# `pytest -n 2` each of the two workers already has a core.
torch.set_num_threads(1)

# The authors' released CIFAR-10 models live beside the checkout, never inside it.
OFFICIAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "official-pushpull-cifar10"
# So are the frost photos of the ImageNet-C scripts; tests never download them.
FROST_DIR = Path(__file__).resolve().parents[2] / "shared" / "hendrycks-frost"
os.environ[FROST_DIR_ENV] = str(FROST_DIR)


@pytest.fixture(scope="session")
def official_dir() -> Path:
    if not OFFICIAL_DIR.is_dir():
        pytest.fail(
            f"the authors' checkpoints are expected at {OFFICIAL_DIR} (../shared beside the repo)"
        )
    return OFFICIAL_DIR


@pytest.fixture(scope="session")
def logits_atol() -> float:
    """The tolerance README.md promises for the converted models' logits: the tests assert it."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(r"reproduce the authors' logits to within ([0-9.e-]+)\.?\s", readme)
    assert match, "README.md no longer states the logits tolerance of the converted models"
    return float(match.group(1).rstrip("."))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _native_cache(tmp_path_factory):
    # C kernels are built afresh for each test session, which tests the build, and nothing is
    # written to the user's cache
    os.environ[native.ENV_CACHE] = str(tmp_path_factory.mktemp("native-cache"))
