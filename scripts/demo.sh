#!/usr/bin/env bash
# One command on a fresh Debian/Ubuntu machine: install timm-pushpull and Fashion-MNIST, then run
# the demo (baselines vs push-pull on Fashion-MNIST, CPU only, < 20 minutes on 2 cores).
#   bash scripts/demo.sh [--out DIR] [--quick]      (arguments go to `timm-pushpull demo`)
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install torch==2.14.1 torchvision==0.29.1
python -m pip install -e .

bash scripts/install_fashion_mnist.sh

exec timm-pushpull demo "$@"
