#!/usr/bin/env bash
# Fresh machine -> green test suite: installs PyTorch, the package and its test extras, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.14.1 torchvision==0.29.1
python3 -m pip install -q -e ".[test]"
bash scripts/install_fashion_mnist.sh  # real data for the demo test
ruff check .
python3 -m pytest -n 2 -q "$@"
