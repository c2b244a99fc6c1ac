"""``timm-pushpull train``: train a timm model on a recipe with Accelerate.

Examples::

    timm-pushpull train --model resnet20_pp --recipe cifar_resnet --data-dir data/cifar10
    timm-pushpull train --model lenet5_a_pp --recipe lenet_mnist --epochs 3 --lr 0.05
    timm-pushpull train --init-from resnet50 --convert stage1 --recipe imagenet_resnet \\
        --dataset folder:/data/imagenet --set convert_kwargs.pull_scale=2
    accelerate launch --multi_gpu --num_processes 4 -m timm_pushpull.cli train ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

import yaml

from .config import (
    TrainConfig,
    available_recipes,
    build_config,
    parse_assignment,
    parse_value,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument(
        "--recipe",
        help=f"recipe name ({', '.join(available_recipes())}) or a YAML file of settings",
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting (YAML value; dotted keys reach into mappings, e.g. model_kwargs.pp_pull_scale=3)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved settings and exit"
    )
    group = parser.add_argument_group("settings (override the recipe; values are parsed as YAML)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            group.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS
            )
        else:
            # parsed as YAML by config_from_args, where a bad value is a one-line error naming it
            group.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, metavar="VALUE")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides: dict[str, Any] = {
        f.name: getattr(args, f.name)
        if f.type == "bool"
        else parse_value(f.name, getattr(args, f.name))
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)
    }
    overrides.update(parse_assignment(text) for text in args.assignments)
    return build_config(args.recipe, overrides)


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    from .trainer import train  # deferred: accelerate/datasets imports are slow

    result = train(cfg, recipe=args.recipe)
    print(json.dumps(result, indent=2))
    return 0
