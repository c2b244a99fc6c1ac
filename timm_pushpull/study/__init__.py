"""``timm-pushpull study``: the papers' push-pull and blur-pool experiments on Fashion-MNIST, over seeds.

Runs a declared grid (:data:`GROUPS`) of cells, each one (model, model kwargs, training seed):
train with the package's trainer (the demo's recipes, :func:`..experiments.training_overrides`),
then :func:`~..robustness.evaluate.evaluate_model` on the Fashion-MNIST test set with the protocol of
the paper the group reproduces:

- ``lenet``: LeNet-5 A-D vs PA-PD (Strisciuglio et al., "Enhanced robustness of convolutional
  networks with a push-pull inhibition layer", NCAA 2020; its MNIST tables are in the
  supplementary material of the preprint, arXiv:1901.10208): Gaussian and speckle noise of
  variance 0..0.5 and Poisson noise after a contrast drop C = 1, 0.5, 0.4, 0.3, 0.2.
- ``h_alpha``: pull scale h x inhibition alpha of LeNet-5 PA (LeNet only), at evaluate's
  CIFAR-scale noise levels (Poisson noise after contrast changes C = 0.4-2.5).
- ``variants``: learned per-channel alpha, unrectified, SE / SimAM attention, multi-scale pull.
- ``resnet``: ResNet-20, _pp, _pp_b1, with and without anti-aliasing, briefly trained (10,000
  images, 3 epochs): the 19 corruptions, noise sweeps and shift consistency.
- ``resnet_plateau``: ResNet-20, _pp, _pp_b1 and +aa trained to a plateau (all 60,000 images,
  a one-cycle schedule), tested on 2,000 images: the same tests.
- ``blurpool``: LeNet-5 with blur-pool filters rect / tri / bin of size 2-7 (Zhang, "Making
  Convolutional Networks Shift-Invariant Again", ICML 2019): clean accuracy, shift consistency.

Every model is evaluated on the same test images with the same noise draws (evaluation seed 0),
so models of one training seed are compared image by image. Some cells of different labels train
the same model (e.g. ``A`` of ``lenet``, ``A cifar-levels`` and ``A no-blur``): the report counts
the distinct trainings by their weights. The output folder holds::

    study.json                      the grid and settings (another grid is refused here; one
                                    that only adds cells, e.g. seeds or groups, extends it)
    cells/<group>/<label>-s<seed>/  training/ (run folder), results.json, per_image.npz
    data/fashion-mnist-c-<n>/       the corrupted copies of the n test images of the groups
                                    tested on n images, shared by their cells
    report/README.md, report/*.png  tables (mean and 95% interval over seeds), paired
                                    comparisons, plots with error bands, the papers' numbers

A cell is finished when its results.json is present and valid; an interrupted cell restarts
(training from its last checkpoint, the evaluation from its last finished test).

The package: :mod:`.grid` (the groups and cells), :mod:`.folder` (the study folder on disk),
:mod:`.runner` (running the cells), :mod:`.statistics` (intervals over seeds, paired
comparisons), :mod:`.papers` (the papers' numbers) and :mod:`.report` (the report); this module
holds the command (``add_arguments``, ``main``). The presets of ``--scale`` are
:data:`..experiments.STUDY_SCALES`.
"""

from __future__ import annotations

import argparse

from ..experiments import STUDY_SCALES
from .grid import GROUPS, Cell
from .report import write_study_report
from .runner import run_study

__all__ = ["GROUPS", "Cell", "add_arguments", "main", "run_study", "write_study_report"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument(
        "--out",
        default="timm-pushpull-study",
        help="study folder (resumed when it holds this study)",
    )
    parser.add_argument(
        "--scale",
        choices=list(STUDY_SCALES),
        help="quick: tiny data, 2 cells x 2 seeds per group (seconds); full (default): every "
        "group but resnet_plateau sized for ~4 hours on 2 cores, resnet_plateau many more; "
        "large: the papers' scale, all training and test images (~50-60 CPU-hours)",
    )
    parser.add_argument("--quick", action="store_true", help="the same as --scale quick")
    parser.add_argument(
        "--only", action="append", choices=list(GROUPS), help="run only this group (repeatable)"
    )
    parser.add_argument("--workers", type=int, default=2, help="single-threaded worker processes")
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX files (default: the system's)")
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished cells")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    if not args.report_only:
        try:
            run_study(args.out, args.quick, args.only, args.workers, args.data_dir, args.scale)
        except KeyboardInterrupt:
            print("study: stopped (unfinished cells keep their checkpoints); the same command "
                  "resumes it", flush=True)  # fmt: skip
            return 130
    print(f"report: {write_study_report(args.out)}", flush=True)
    return 0
