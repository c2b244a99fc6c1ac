#!/usr/bin/env bash
# Fresh machine -> green test suite: installs PyTorch, the package and its test extras, then runs
# pytest and timm's own model tests on our models.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.14.1 torchvision==0.29.1
python3 -m pip install -q -e ".[test]"
# the frost photos of Hendrycks' scripts ship in imagecorruptions; its dependencies are left out:
# opencv-python would shadow our opencv-python-headless (both install cv2), and none is imported
python3 -m pip install -q --no-deps imagecorruptions==1.1.2
bash scripts/install_fashion_mnist.sh  # real data for the demo test
# ImageMagick's MagickWand (through the Wand package) for the reference motion blur and snow of
# tests/test_corruptions_reference.py, as Hendrycks' scripts use it
if ! ldconfig -p | grep -q "libMagickWand-6.Q16.so"; then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -qq && $sudo apt-get install -y -qq libmagickwand-6.q16-6
fi
ruff check .
python3 -m pytest -n 2 -q "$@"
# timm's own tests/test_models.py (from the installed timm's sdist, cached) on a sample of our models
bash tests/timm_suite/run.sh -q -n 2
