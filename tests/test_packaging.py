"""The wheel carries the files the package reads at run time, and an install finds them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    # a copy, so the build leaves no build/ or egg-info behind in the checkout
    shutil.copytree(
        REPO_ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "runs", "reports"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-q", "-w", str(tmp_path / "dist")],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("timm_pushpull-*.whl")
    return wheel


def test_wheel_ships_card_template_hub_configs_and_c_sources(tmp_path):
    wheel = _build_wheel(tmp_path)
    configs = sorted((REPO_ROOT / "hub_configs").glob("*.yaml"))
    assert configs
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert (
            archive.read("timm_pushpull/MODEL_CARD.md")
            == (REPO_ROOT / "MODEL_CARD.md").read_bytes()
        )
        for config in configs:
            assert archive.read(f"timm_pushpull/hub_configs/{config.name}") == config.read_bytes()
        for c_source in sorted((REPO_ROOT / "timm_pushpull" / "csrc").iterdir()):
            name = c_source.relative_to(REPO_ROOT).as_posix()
            assert archive.read(name) == c_source.read_bytes()
    assert not any(name.startswith("hub_configs/") for name in names)  # inside the package only

    # installed from the wheel (not this checkout), publishing finds its template and configs and
    # the blur-pool C kernel builds from the installed source
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", str(wheel), "--no-deps", "--no-index", "-q"]
        + ["--target", str(target)],
        check=True,
    )
    probe = (
        "import json, timm_pushpull, timm_pushpull.hub as hub; "
        "from timm_pushpull import native; print(json.dumps(["
        "timm_pushpull.__file__, hub.MODEL_CARD_TEMPLATE.is_file(), "
        "sorted(p.name for p in hub.HUB_CONFIGS_DIR.glob('*.yaml')), "
        "native.find_compiler() is None or native.load('blur_pool') is not None]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={
            **os.environ,
            "PYTHONPATH": str(target),
            "TIMM_PUSHPULL_CACHE": str(tmp_path / "cache"),
        },
        cwd=tmp_path,  # not the checkout, which `python -c` would put first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    package_file, has_template, installed_configs, kernel_built = json.loads(
        result.stdout.splitlines()[-1]
    )
    assert Path(package_file).is_relative_to(target)
    assert has_template
    assert installed_configs == [config.name for config in configs]
    assert kernel_built
