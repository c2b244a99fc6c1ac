#!/usr/bin/env bash
# Fresh machine -> green test suite: installs PyTorch, the package and its test extras, then runs
# pytest and timm's own model tests on our models.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.14.1 torchvision==0.29.1
python3 -m pip install -q -e ".[test]"
bash scripts/install_fashion_mnist.sh  # real data for the demo test
ruff check .
python3 -m pytest -n 2 -q "$@"
# timm's own tests/test_models.py (from the installed timm's sdist, cached) on a sample of our models
bash tests/timm_suite/run.sh -q -n 2
