"""Frost: the reference photos by default, found and fetched as documented, drawn as the scripts do.

Every test here needs the photos (``frost_photos`` in conftest.py: TIMM_PUSHPULL_FROST_DIR,
../shared or an installed imagecorruptions); conftest.py points TIMM_PUSHPULL_FROST_DIR at them.
"""

import hashlib
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from timm_pushpull import native
from timm_pushpull.benchmarks import corruption_references as references
from timm_pushpull.robustness.corruptions import SEVERITY_PARAMS, corrupt
from timm_pushpull.robustness.corruptions import frost as frost_module
from timm_pushpull.robustness.corruptions.frost import (
    FROST_DIR_ENV,
    FROST_PHOTOS,
    frost_textures,
    resolve_frost_source,
)

pytestmark = pytest.mark.usefixtures("frost_photos")

REFERENCE_NAMES = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"]


@pytest.fixture
def no_env_folder(monkeypatch, tmp_path):
    """No $TIMM_PUSHPULL_FROST_DIR and a fresh, empty download cache."""
    monkeypatch.delenv(FROST_DIR_ENV)
    monkeypatch.setenv(native.ENV_CACHE, str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def nothing_installed(no_env_folder, monkeypatch):
    """As without imagecorruptions (the test extra installs it): the download comes next."""
    monkeypatch.setattr(frost_module, "imagecorruptions_frost_folder", lambda: None)
    return no_env_folder


def _file_url(folder: Path) -> str:
    return folder.resolve().as_uri() + "/{name}"


def reference_frost(
    folder: Path, image: np.ndarray, severity: int, scale: str, idx: int, start
) -> np.ndarray:
    """``frost()`` of make_cifar_c.py / make_imagenet_c.py with its draws given: photo ``idx``
    (``np.random.randint(5)``), crop corner ``start`` (the two ``randint(0, side - size)``)."""
    c = {
        "cifar": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
        "imagenet": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
    }[scale][severity - 1]
    photo = cv2.imread(str(folder / REFERENCE_NAMES[idx]))
    if scale == "cifar":
        photo = cv2.resize(photo, (0, 0), fx=0.2, fy=0.2)
    return references.frost(image, c, photo[..., [2, 1, 0]], *start)


def test_env_folder_gives_the_five_reference_photos():
    source = resolve_frost_source()
    assert source.kind == "photos" and source.origin == "env" and source.reference
    assert [Path(path).name for path in source.files] == REFERENCE_NAMES  # never frost6
    assert source.to_json()["comparable"] is True
    assert len(frost_textures(32, 0.2)) == 5


@pytest.mark.parametrize("scale, size", [("cifar", 32), ("imagenet", 224)])
def test_frost_matches_the_reference_script(scale, size, frost_photos):
    """Same photo and crop as the reference draws: within one 8-bit level (the blend is exact;
    the reference shrinks the 8-bit photo, which we do as well)."""
    images = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    images = np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
                       for image in images])  # fmt: skip
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    zoom = SEVERITY_PARAMS["frost"][scale][0][2]
    photo_shapes = [cv2.resize(cv2.imread(str(frost_photos / name)), (0, 0), fx=zoom, fy=zoom).shape
                    if zoom != 1 else cv2.imread(str(frost_photos / name)).shape
                    for name in REFERENCE_NAMES]  # fmt: skip
    for severity in (1, 5):
        seed = 3 + severity
        out = corrupt(batch, "frost", severity, scale=scale, seed=seed, output="float")
        # the draws of corrupt(): one photo index each, then the crop corners as uniforms
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(5, (len(images),), generator=g)
        u = torch.rand(len(images), 2, generator=g)
        for k, image in enumerate(images):
            shape = photo_shapes[idx[k]]
            start = (u[k] * torch.tensor([shape[0] - size, shape[1] - size])).long().tolist()
            expected = reference_frost(frost_photos, image, severity, scale, int(idx[k]), start)
            got = out[k].permute(1, 2, 0).numpy() * 255
            np.testing.assert_allclose(got, expected, atol=1.0)


def test_imagecorruptions_folder_is_found_without_importing_it(
    no_env_folder, monkeypatch, frost_photos
):
    site = no_env_folder / "site"
    package = site / "imagecorruptions"
    shutil.copytree(frost_photos, package / "frost")
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    info = site / "imagecorruptions-1.1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: imagecorruptions\nVersion: 1.1.2\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(frost_module, "FROST_URL", "http://invalid.invalid/{name}")
    source = resolve_frost_source()
    assert source.origin == "imagecorruptions" and source.reference
    assert Path(source.files[0]).parent == package / "frost"


def test_download_checks_hashes_and_fills_the_cache(nothing_installed, monkeypatch, frost_photos):
    no_env_folder = nothing_installed
    monkeypatch.setattr(frost_module, "FROST_URL", _file_url(frost_photos))
    source = resolve_frost_source()
    assert source.kind == "photos" and source.origin == "cache" and source.reference
    cached = sorted(Path(source.files[0]).parent.iterdir())
    assert [path.name for path in cached] == REFERENCE_NAMES  # nothing else, no partial file
    for path in cached:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == FROST_PHOTOS[path.name]
    assert str(no_env_folder / "cache") in source.files[0]


def test_a_damaged_download_falls_back_to_procedural_with_a_warning(
    nothing_installed, monkeypatch, frost_photos
):
    no_env_folder = nothing_installed
    mirror = no_env_folder / "mirror"
    shutil.copytree(frost_photos, mirror)
    (mirror / "frost3.png").write_bytes(b"not the photo")
    monkeypatch.setattr(frost_module, "FROST_URL", _file_url(mirror))
    with pytest.warns(UserWarning, match="not comparable"):
        source = resolve_frost_source()
    assert source.kind == "procedural" and not source.reference
    assert source.to_json()["comparable"] is False
    cache = no_env_folder / "cache"
    assert not list(cache.rglob("frost3*"))  # the bad file is never kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = corrupt(torch.zeros(2, 3, 32, 32), "frost", 3)  # resolved once: no new warning
    assert out.max() > 0


def test_procedural_only_when_asked():
    source = resolve_frost_source("procedural")
    assert source.kind == "procedural" and not source.reference
    images = torch.full((2, 3, 32, 32), 0.5)
    photos = corrupt(images, "frost", 5, seed=1)
    procedural = corrupt(images, "frost", 5, seed=1, frost="procedural")
    assert not torch.equal(photos, procedural)
    with pytest.raises(ValueError, match="frost 'photo'.*photos, procedural"):
        corrupt(images, "frost", 5, frost="photo")


def test_env_folder_must_hold_frost1_to_frost5(tmp_path, monkeypatch, frost_photos):
    for name in REFERENCE_NAMES[:4]:
        shutil.copy(frost_photos / name, tmp_path / name)
    monkeypatch.setenv(FROST_DIR_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="lacks frost5"):
        resolve_frost_source()
    texture = np.zeros((200, 300, 3), np.uint8)
    texture[..., 2] = 255  # pure red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "frost5.png"), texture)
    source = resolve_frost_source()
    assert source.kind == "photos" and not source.reference  # not the reference photos
    assert frost_textures(32, 0.2, source)[4].shape == (40, 60, 3)
    monkeypatch.setenv(FROST_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=FROST_DIR_ENV):
        corrupt(torch.zeros(1, 3, 32, 32), "frost", 1)


class _MeanClassifier(torch.nn.Module):
    def forward(self, x):
        return torch.stack([x.mean((1, 2, 3)), 1 - x.mean((1, 2, 3))], 1)


@pytest.mark.parametrize("frost, comparable", [("photos", True), ("procedural", False)])
def test_results_and_report_record_the_frost_source(tmp_path, frost, comparable):
    from timm_pushpull.robustness.evaluate import evaluate_model
    from timm_pushpull.robustness.report import write_report

    images, labels = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    results = evaluate_model(_MeanClassifier(), images, labels, corruptions=["frost"],
                             severities=[1], progress=False, mean=[0.0] * 3, std=[1.0] * 3,
                             out_dir=tmp_path, frost=frost)  # fmt: skip
    assert results["settings"]["frost"]["kind"] == frost
    assert results["settings"]["frost"]["comparable"] is comparable
    assert results["corruptions"]["frost"]["comparable"] is comparable
    write_report([results], tmp_path)
    assert ("not comparable" in (tmp_path / "report.md").read_text()) is not comparable
    with pytest.raises(ValueError, match="frost must be one of"):
        evaluate_model(_MeanClassifier(), images, labels, frost="photo", progress=False)
