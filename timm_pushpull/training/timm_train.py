"""``timm-pushpull timm-train``: run timm's own ``train.py`` (or any script) with our models registered.

timm has no plugin discovery and its ``train.py`` is not part of the wheel (take it from a timm
checkout of the installed version). Two equivalent routes::

    timm-pushpull timm-train path/to/timm/train.py --model resnet20_pp --dataset torch/cifar10 ...
    python path/to/timm/train.py --device-modules timm_pushpull --model resnet20_pp ...

The first imports :mod:`timm_pushpull` and then runs the script as ``__main__`` with the given
arguments; the second uses timm's ``--device-modules`` flag, which imports the named modules
before the model is created.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument(
        "script", type=Path, help="timm's train.py (or another script using timm models)"
    )
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")


def run_script(script: str | Path, script_args: list[str]) -> None:
    """Import timm_pushpull, then run ``script`` as ``__main__`` with ``sys.argv = [script, *args]``."""
    import timm_pushpull  # noqa: F401  (registers our models with timm before the script creates one)

    script = Path(script)
    if not script.is_file():
        raise FileNotFoundError(
            f"script {script} not found (timm's train.py is not in the timm wheel)"
        )
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script), *script_args]
    sys.path.insert(0, str(script.resolve().parent))  # as `python script.py` would
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def main(args: argparse.Namespace) -> int:
    try:
        run_script(args.script, args.script_args)
    except SystemExit as e:  # the script's own exit status
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
