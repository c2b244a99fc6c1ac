import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from timm_pushpull import native
from timm_pushpull.constants import OFFICIAL_DIR_ENV
from timm_pushpull.robustness.corruptions.frost import FROST_DIR_ENV, imagecorruptions_frost_folder

# Tiny tensors throughout: a second thread only adds oneDNN synchronisation, and under
# `pytest -n 2` each of the two workers already has a core.
torch.set_num_threads(1)

# Files the repository does not hold (never copied into it): where the tests find them.
SHARED = Path(__file__).resolve().parents[2] / "shared"  # ../shared beside the checkout
# In CI a missing file fails its tests; elsewhere they skip, and one line at the end says why.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MISSING_PREFIX = "needs files this clone lacks: "
RESOURCES = {
    "official": (
        "the authors' released CIFAR-10 checkpoints and results",
        f"set {OFFICIAL_DIR_ENV} to their folder (checkpoints/, results/, reference_logits.pt, "
        f"LICENSE) or put it at {SHARED / 'official-pushpull-cifar10'}",
    ),
    "frost": (
        "the frost photos of Hendrycks' scripts (frost1.png ... frost5.jpg)",
        f"pip install --no-deps imagecorruptions, or set {FROST_DIR_ENV} to a folder holding "
        f"them, or put them at {SHARED / 'hendrycks-frost'}",
    ),
}


def _folder(env: str, default: Path) -> Path | None:
    """``$env`` when set (it must then be a folder), else ``default`` when it exists."""
    if os.environ.get(env):
        folder = Path(os.environ[env]).expanduser()
        if not folder.is_dir():
            raise pytest.UsageError(f"{env}={folder} is not a folder")
        return folder
    return default if default.is_dir() else None


OFFICIAL_DIR = _folder(OFFICIAL_DIR_ENV, SHARED / "official-pushpull-cifar10")
FROST_PHOTOS_DIR = _folder(FROST_DIR_ENV, SHARED / "hendrycks-frost") or (
    imagecorruptions_frost_folder()
)


def _require(resource: str, folder: Path | None) -> Path:
    if folder is not None:
        return folder
    what, how = RESOURCES[resource]
    message = f"{MISSING_PREFIX}{what}; {how}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: these tests are mandatory)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """The folder of the authors' release (TIMM_PUSHPULL_OFFICIAL_DIR or ../shared)."""
    return _require("official", OFFICIAL_DIR)


@pytest.fixture(scope="session")
def frost_photos() -> Path:
    """The folder of the reference frost photos (TIMM_PUSHPULL_FROST_DIR, ../shared or an
    installed imagecorruptions)."""
    return _require("frost", FROST_PHOTOS_DIR)


@pytest.fixture(autouse=True, scope="session")
def _frost_textures(tmp_path_factory):
    """The frost corruption reads TIMM_PUSHPULL_FROST_DIR; tests never download the photos.
    Without them it blends stand-in textures (not the reference ones: results say so), and the
    tests that compare with the reference photos skip through ``frost_photos``."""
    folder = FROST_PHOTOS_DIR
    if folder is None:
        folder = tmp_path_factory.mktemp("frost-stand-ins")
        rng = np.random.default_rng(0)
        for k in range(1, 6):
            cv2.imwrite(
                str(folder / f"frost{k}.png"), rng.integers(0, 256, (360, 480, 3), np.uint8)
            )
    os.environ[FROST_DIR_ENV] = str(folder)


def pytest_terminal_summary(terminalreporter) -> None:
    """One line for the tests skipped for want of files outside the repository, and how to
    provide them (their own reasons show with -rs)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        reason = reason.removeprefix("Skipped: ")
        if reason.startswith(MISSING_PREFIX):
            reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        what = " | ".join(r.removeprefix(MISSING_PREFIX) for r in reasons)
        terminalreporter.write_line(
            f"timm-pushpull: {sum(reasons.values())} tests skipped, they need files this clone "
            f"lacks: {what}. In CI (CI=true) they fail instead."
        )


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
