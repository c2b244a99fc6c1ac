"""``timm-pushpull evaluate``: flags -> :class:`EvalSettings` and :class:`RunOptions`, the model
and the data sets -> their plan (:func:`~timm_pushpull.robustness.plan.plan_evaluation`) ->
:func:`~timm_pushpull.robustness.evaluate.run_evaluation`, then the report of the run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import InvalidArgumentError, MissingFileError
from ..corruptions import OUTPUTS, SPATTER_MODES
from ..corruptions.frost import FROST_SOURCES
from ..datasets import ArrayImageDataset, open_datasets, to_unit_images
from ..evaluate import hold_output, run_evaluation
from ..parallel import release_process_group_at_exit
from ..plan import EvalData, plan_evaluation
from ..report import format_comparison, write_report
from ..settings import PRECISIONS, SCALES, SHIFT_MODES, SUITES, EvalSettings, RunOptions

if TYPE_CHECKING:
    from accelerate import PartialState

__all__ = ["add_arguments", "main", "open_datasets", "settings_from_args"]


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="timm model name (ours are registered), or local-dir:DIR / hf-hub:ID (a weights "
        "folder: its weights are evaluated unless --checkpoint names others)",
    )
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--pretrained", action="store_true", help="load the model's pretrained weights"
    )
    weights.add_argument(
        "--checkpoint", help="weights file: .safetensors or a torch checkpoint (weights_only)"
    )
    parser.add_argument(
        "--num-classes", type=int, help="classifier size when it differs from the model default"
    )
    parser.add_argument(
        "--dataset", action="append", required=True, metavar="SPEC",
        help="repeatable: a CIFAR-10/100-C folder, an ImageNet-C folder, a CIFAR-10-P or ImageNet-P "
        "folder (<perturbation>/<wnid>/*.mp4), and/or "
        "a clean test set (cifar10:ROOT, cifar100:ROOT, fashion_mnist[:ROOT], mnist:ROOT, hf:PATH, "
        "folder:PATH, an image folder; @SPLIT picks a split other than test) from which missing "
        "corruptions are generated",
    )  # fmt: skip
    parser.add_argument(
        "--suite", type=_comma_list, default=["c"], help=f"comma list of {', '.join(SUITES)}"
    )
    parser.add_argument(
        "--corruptions", type=_comma_list, help="comma list (default: all available)"
    )
    parser.add_argument(
        "--severities", type=lambda s: [int(v) for v in _comma_list(s)], default=[1, 2, 3, 4, 5]
    )
    parser.add_argument(
        "--perturbations", type=_comma_list, help="comma list (default: all available)"
    )
    parser.add_argument(
        "--scale",
        choices=SCALES,
        help="parameters of generated corruptions (default: by image size)",
    )
    parser.add_argument(
        "--baseline", help="alexnet-cifar10c, alexnet-imagenetc, a results.json or a folder with the "
        "authors' C_details.txt (default: none, no CE/mFR)",
    )  # fmt: skip
    parser.add_argument(
        "--out", required=True, help="output folder: results.json, report.md, plots"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--max-images", type=int, help="evaluate a fixed random subset of this many images"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers reading images ahead"
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help="dtype of the model's forward pass (bf16 / fp16 under autocast)",
    )  # fmt: skip
    parser.add_argument(
        "--channels-last", action="store_true", help="channels-last memory for model and inputs"
    )
    parser.add_argument(
        "--img-size", type=int, help="input size for image folders (default: the model's)"
    )
    parser.add_argument("--shift-mode", choices=SHIFT_MODES, default="circular")
    parser.add_argument(
        "--max-shift", type=int, help="largest shift in pixels (default: image size / 7)"
    )
    parser.add_argument("--shift-trials", type=int, default=1, help="random shift pairs per image")
    parser.add_argument("--num-frames", type=int, help="frames of generated perturbation sequences")
    parser.add_argument(
        "--frost", choices=FROST_SOURCES, default="photos", help="frost textures of generated "
        "corruptions: the reference photos (found or downloaded once) or procedural ones",
    )  # fmt: skip
    parser.add_argument(
        "--spatter", choices=SPATTER_MODES, default="wrap", help="generated spatter: the released "
        "data's 8-bit wrap of the water layer, or clipped",
    )  # fmt: skip
    parser.add_argument(
        "--corruption-output", choices=OUTPUTS, default="released", help="generated corruptions "
        "stored like the released sets (8 bits; JPEG q85 at ImageNet scale) or kept as floats",
    )  # fmt: skip
    parser.add_argument(
        "--device", help="default: cuda when available, else cpu; under torchrun / accelerate "
        "launch each process takes its own GPU, and --device cpu runs the processes on CPUs (gloo)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-report", action="store_true", help="write results.json only")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start over when --out holds the results of another run (they are replaced); "
        "without it such a run is refused",
    )  # fmt: skip


def _processes_state(device: str | None) -> PartialState:
    """Accelerate's state of the processes launched together (one alone without a launcher);
    ``cpu`` makes torchrun's processes a gloo group on CPUs."""
    from accelerate import PartialState

    try:
        cpu = torch.device(device).type == "cpu" if device else not torch.cuda.is_available()
    except RuntimeError:
        raise InvalidArgumentError(
            f"--device {device!r} is not a torch device (cpu, cuda, cuda:N, mps, ...)"
        ) from None
    return PartialState(cpu=cpu)


def settings_from_args(args: argparse.Namespace) -> EvalSettings:
    """The evaluation settings the flags ask for (normalisation: the model's, found by the plan)."""
    return EvalSettings(
        suites=args.suite, corruptions=args.corruptions, perturbations=args.perturbations,
        baseline=args.baseline, severities=args.severities, scale=args.scale, seed=args.seed,
        max_images=args.max_images, shift_mode=args.shift_mode, max_shift=args.max_shift,
        shift_trials=args.shift_trials, num_frames=args.num_frames, precision=args.precision,
        channels_last=args.channels_last, frost=args.frost, spatter=args.spatter,
        corruption_output=args.corruption_output,
    )  # fmt: skip


def _sample_images(dataset: Dataset, count: int = 4) -> torch.Tensor:
    """The first ``count`` images of a dataset, in [0, 1] (for the report's response maps)."""
    indices = np.arange(min(count, len(dataset)))
    if isinstance(dataset, ArrayImageDataset):
        return dataset.batch(indices)[0]
    return to_unit_images(torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in indices]))


def main(args: argparse.Namespace) -> int:
    state = _processes_state(args.device)
    results = _run(args, state)
    release_process_group_at_exit()
    if state.is_main_process:
        print(format_comparison([results]))
    return 0


def _run(args: argparse.Namespace, state: PartialState) -> dict:
    settings = settings_from_args(args)  # bad flags fail before the model is made
    options = RunOptions(args.device, args.batch_size, args.workers, not args.no_progress)
    for flag, value in (("--num-classes", args.num_classes), ("--img-size", args.img_size)):
        if value is not None and value < 1:
            raise InvalidArgumentError(f"{flag} must be an int >= 1, got {value}")
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise MissingFileError(f"--checkpoint {args.checkpoint} does not exist")
    with hold_output(args.out, state):  # the whole run, its report included
        return _evaluate(args, state, settings, options)


def _evaluate(
    args: argparse.Namespace, state: PartialState, settings: EvalSettings, options: RunOptions
) -> dict:
    from timm.data import resolve_data_config

    from ...factory import create_model, load_weights  # clear errors: unknown models, bad files

    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    # a model named by a weights folder (local-dir:, hf-hub:) means that folder's weights
    pretrained = args.pretrained or (
        args.checkpoint is None and args.model.startswith(("local-dir:", "hf-hub:"))
    )
    # weights not loaded are the same in every process and rerun; the caller's generator is kept
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = create_model(args.model, pretrained=pretrained, **kwargs)
    trained_classes = model.pretrained_cfg.get("num_classes")
    if pretrained and args.num_classes is not None and args.num_classes != trained_classes:
        raise InvalidArgumentError(
            f"--num-classes {args.num_classes} differs from the {trained_classes} classes of the "
            f"weights of {args.model}: their classifier would be replaced by a random one; leave "
            "--num-classes out"
        )
    if args.checkpoint is not None:
        load_weights(model, args.checkpoint, args.model)
    overrides = {} if args.img_size is None else {"input_size": (model.pretrained_cfg.get("input_size", (3,))[0],
                                                                   args.img_size, args.img_size)}  # fmt: skip
    data_config = resolve_data_config(overrides, model=model)
    opened = open_datasets(args.dataset, data_config)
    data = EvalData(
        clean=opened.get("clean", (None, None))[0], corrupted=opened.get("c", (None,))[0],
        sequences=opened.get("p", (None,))[0],
        names={role: description for role, (_, description) in opened.items()},
    )  # fmt: skip
    plan = plan_evaluation(model, data, settings)  # normalisation: the model's data config
    results = run_evaluation(
        model, data, plan, options, out_dir=args.out, overwrite=args.overwrite,
        model_name=args.model, model_args={"pretrained": pretrained, **kwargs},
        checkpoint=args.checkpoint, accelerator=state, out_dir_held=True,
    )  # fmt: skip
    if not args.no_report and state.is_main_process:
        sample = None if data.clean is None else _sample_images(data.clean)
        normalization = {args.model: (plan.settings.mean, plan.settings.std)}
        write_report([results], args.out, models={args.model: model}, sample_images=sample,
                     normalization=normalization)  # fmt: skip
    return results
