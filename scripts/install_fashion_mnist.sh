#!/usr/bin/env bash
# Debian's Fashion-MNIST IDX files in /usr/share/datasets/fashion-mnist (the demo's data), if missing.
set -euo pipefail
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get install -y dataset-fashion-mnist || {
        $sudo_cmd apt-get update && $sudo_cmd apt-get install -y dataset-fashion-mnist
    }
fi
