"""timm-pushpull: push-pull and blur-pool CNNs for timm (train, evaluate robustness, publish).

One sub-command per task, each living next to its code.

Each sub-command module exposes ``add_arguments(parser)`` and ``main(args) -> int``; it is imported
only when its sub-command runs, so a missing optional dependency of one task never breaks another.

Why this module sits beside the package rather than in it: importing anything inside
``timm_pushpull`` first runs the package's ``__init__``, which imports torch and timm to register
the models (that is what ``import timm_pushpull`` promises). The console script points here, so
``timm-pushpull --help`` answers without importing torch; ``python -m timm_pushpull.cli`` (what
``accelerate launch`` and ``torchrun`` run) is the same ``main``.

Mistakes in what the user asked for (:class:`timm_pushpull.errors.UserError`) are printed here, in
one line, with exit status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["COMMANDS", "build_parser", "main"]

# sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "timm_pushpull.demo",
        "Fashion-MNIST: train baselines vs push-pull, benchmark robustness, write a report",
    ),
    "study": (
        "timm_pushpull.study",
        "Fashion-MNIST: the papers' experiments over seeds, resumable, with a report",
    ),
    "train": ("timm_pushpull.training.train", "train a model on a recipe with Accelerate"),
    "timm-train": (
        "timm_pushpull.training.timm_train",
        "run timm's own train.py with our models registered",
    ),
    "evaluate": (
        "timm_pushpull.robustness.cli.evaluate",
        "robustness benchmark (-C, -P, shift, noise sweeps) of any timm model",
    ),
    "compare": ("timm_pushpull.robustness.cli.compare", "side-by-side table of results.json files"),
    "convert-official": (
        "timm_pushpull.models.official",
        "convert the authors' CIFAR-10 checkpoints to timm folders",
    ),
    "publish": (
        "timm_pushpull.hub.publish",
        "write (and upload) a Hub model folder: safetensors, config, card",
    ),
    "bench": (
        "timm_pushpull.benchmarks",
        "speed benchmark of the layers and models on this machine",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="timm-pushpull", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints usage / the allowed commands and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    sub_parser = argparse.ArgumentParser(
        prog=f"timm-pushpull {name}", description=COMMANDS[name][1]
    )
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(rest)
    from timm_pushpull.errors import UserError  # the sub-command has imported the package anyway

    if "HF_HUB_VERBOSITY" not in os.environ:
        # a Hub that cannot be reached ends in our one-line error naming the repository; the
        # Hub's own retry warnings before it would break that line (HF_HUB_VERBOSITY shows them)
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()

    try:
        return int(module.main(args) or 0)
    except UserError as error:
        message = str(error)
        if "\nOriginal Traceback" in message:
            # raised in a DataLoader worker, which hands it over wrapped in its traceback: the
            # last line is "module.Type: message"
            message = message.strip().splitlines()[-1].split(": ", 1)[-1]
        # one line, like argparse's own errors: messages may quote multi-line library errors
        print(f"{sub_parser.prog}: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
