"""Every third-party module the package imports when it is imported is a declared requirement.

Static: the imports are read from the source (``ast``), the requirements from ``setup.cfg``, so a
module that CI's environment happens to have (the test extras) cannot hide a missing requirement.
"""

from __future__ import annotations

import ast
import configparser
import re
import subprocess
import sys
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "timm_pushpull"

# Modules that only the speed benchmarks import (inside ``timm-pushpull bench``): their imports
# may come from that extra instead of install_requires.
EXTRA_ONLY_MODULES = {"timm_pushpull.benchmarks.corruption_references": "bench"}
# what this distribution itself installs: the package and the console script's launcher
OWN_TOP_LEVEL = {"timm_pushpull", "timm_pushpull_cli"}


def _normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(value: str) -> set[str]:
    names = set()
    for line in value.splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(_normalise(re.match(r"[A-Za-z0-9_.\-]+", line).group()))
    return names


def _setup_cfg() -> tuple[set[str], dict[str, set[str]]]:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    extras = {k: _requirements(v) for k, v in config["options.extras_require"].items()}
    return _requirements(config["options"]["install_requires"]), extras


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_time_imports(tree: ast.Module, package: str = "") -> list[tuple[int, str]]:
    """(line, absolute name) of what the module imports when it is imported: the imports outside
    functions, including ``if``/``try``/``class`` blocks, except under ``if TYPE_CHECKING:``.
    ``from A import b`` gives ``A`` and ``A.b``; relative imports resolve against ``package``."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (
                package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            )
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module))
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@cache
def _installed_modules() -> dict[str, list[str]]:
    return packages_distributions()  # scans every installed distribution's metadata: seconds


def _distributions(top_level: str) -> set[str]:
    """The distributions that install ``top_level`` (``cv2`` -> opencv-python-headless), by the
    installed packages' metadata; the module's own name where none is installed."""
    return {_normalise(d) for d in _installed_modules().get(top_level, [top_level])}


def test_import_time_imports_are_declared_requirements():
    required, extras = _setup_cfg()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        allowed = required | extras.get(EXTRA_ONLY_MODULES.get(module, ""), set())
        tree = ast.parse(path.read_text(), str(path))
        for line, name in import_time_imports(tree, package):
            top_level = name.split(".")[0]
            if name in EXTRA_ONLY_MODULES:  # would need the extra in every install
                missing.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {name}")
            elif top_level in sys.stdlib_module_names or top_level in OWN_TOP_LEVEL:
                continue
            elif not _distributions(top_level) & allowed:
                missing.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {top_level}")
    missing = list(dict.fromkeys(missing))  # `from a.b import c` names a and a.b on one line
    assert not missing, "imported when the package is, but not in install_requires:\n" + "\n".join(
        missing
    )


def test_the_scan_sees_import_time_imports_and_skips_function_bodies():
    tree = ast.parse(
        "import os\nimport cv2\ntry:\n    import yaml\nexcept ImportError:\n    pass\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import kornia\n"
        "class A:\n    import PIL.Image\ndef f():\n    import skimage\nfrom ..robustness import bench\n"
    )
    assert [n for _, n in import_time_imports(tree, "timm_pushpull.models")] == [
        "os", "cv2", "yaml", "typing", "typing.TYPE_CHECKING", "PIL.Image",
        "timm_pushpull.robustness", "timm_pushpull.robustness.bench",
    ]  # fmt: skip
    assert "opencv-python-headless" in _distributions("cv2")
    assert _distributions("PIL") == {"pillow"} and _distributions("yaml") == {"pyyaml"}


def test_package_imports_without_extras_and_benchmarks_name_the_install_line():
    """In a process where the extras' libraries cannot be imported (``None`` in ``sys.modules``
    makes ``import`` fail as for a missing package), every module but the benchmark-only ones
    imports, and the benchmarks say which ``pip install`` line is missing."""
    _, extras = _setup_cfg()
    blocked = sorted(
        module
        for module, dists in _installed_modules().items()
        if {_normalise(d) for d in dists} <= set().union(*extras.values()) and module.isidentifier()
    )
    assert {"kornia", "skimage"} <= set(blocked)
    modules = [
        _module_name(p)
        for p in sorted(PACKAGE.rglob("*.py"))
        if _module_name(p) not in EXTRA_ONLY_MODULES and p.name != "__main__.py"
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {blocked!r}:\n    sys.modules[name] = None\n"
        f"for module in {modules!r}:\n    importlib.import_module(module)\n"
        "from timm_pushpull.benchmarks import corruptions, layers\n"
        "for run in (layers.bench_blurpool, lambda: corruptions.run(1, repeats=1, verbose=False)):\n"
        "    try:\n        run()\n    except ModuleNotFoundError as error:\n        print(error)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "the blur-pool benchmark needs kornia, which is not installed: "
        "pip install 'timm-pushpull[bench]'",
        "the corruption benchmark needs skimage, which is not installed: "
        "pip install 'timm-pushpull[bench]'",
    ]
