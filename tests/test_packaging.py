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
    # the console script's launcher ships beside the package, and the script points at it
    assert "timm_pushpull_cli.py" in names
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel) as archive:
        assert "timm-pushpull = timm_pushpull_cli:main" in archive.read(entry_points).decode()

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
    # the installed console script answers --help (through the launcher beside the package)
    script = target / "bin" / "timm-pushpull"
    helped = subprocess.run(
        [sys.executable, str(script), "--help"],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "usage: timm-pushpull" in helped.stdout and "convert-official" in helped.stdout


def test_models_import_nothing_above_them():
    """models/ builds on layers/ and the shared constants only: never on the Hub, factory,
    robustness or training code above it (read from the import statements)."""
    import ast

    allowed = {"constants", "errors", "version", "layers", "data", "models"}
    for path in sorted((REPO_ROOT / "timm_pushpull" / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                # relative: level 1 is models/ itself, level 2 the package root
                if node.level == 1:
                    continue
                top = (node.module or "").split(".")[0] or node.names[0].name
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "timm_pushpull"
            ):
                top = (node.module.split(".") + [node.names[0].name])[1]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("timm_pushpull.")]
                if not names:
                    continue
                top = names[0].split(".")[1]
            else:
                continue
            assert top in allowed, f"{path.name} imports timm_pushpull.{top}"
