#!/usr/bin/env python
"""Train a timm(-pushpull) model on a recipe: the same as ``timm-pushpull train``.

python scripts/train.py --model resnet20_pp --recipe cifar_resnet --data-dir data/cifar10
accelerate launch --multi_gpu --num_processes 4 scripts/train.py --model resnet50_pp --recipe imagenet_resnet ...
torchrun --nproc_per_node 2 scripts/train.py --cpu ...   # two CPU processes (gloo)
"""

import sys

from timm_pushpull.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
