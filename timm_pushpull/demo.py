"""``timm-pushpull demo``: baselines vs push-pull on real Fashion-MNIST, on a CPU, in one command.

Trains LeNet-5 (``lenet5_a``) and LeNet-PP (``lenet5_a_pp``), and a CIFAR ResNet-20 with its push-pull
(``resnet20_pp``) and push-pull first conv + first stage (``resnet20_pp_b1``) versions on Fashion-MNIST
(Xiao et al., 2017; 28x28 grey, read from Debian's ``dataset-fashion-mnist`` files), then benchmarks
their robustness on the same test images: the corruptions of CIFAR-10-C generated at CIFAR-scale
parameters (Hendrycks & Dietterich, 2019), Gaussian / speckle / Poisson noise sweeps (Strisciuglio
et al., 2019) and shift consistency (Zhang, 2019). Verdicts are paired comparisons on the same
images, each with its 95% interval (:mod:`.robustness.stats`), computed from the per-image
outcomes the benchmark itself kept (``per_image.npz``): the very inputs behind ``results.json``'s
numbers. The report folder holds::

    README.md                  what was run, how long it took, and which model was more robust on what
    summary.json               the same, machine-readable
    report.md, *.png           side-by-side robustness table and plots
    models/<model>/            each trained model as a Hub folder (model.safetensors, config.json, card)
    training/<model>/          the training run (checkpoint, metrics.jsonl, train_config.yaml)
    robustness/<model>/        results.json of the benchmark, per_image.npz (each image's outcomes)
    data/fashion-mnist-c/      the corrupted test images, in the CIFAR-10-C file layout

Every run is seeded (seed 0); each model is trained once, and the report says so. An existing
report folder is never overwritten: pass ``--resume`` to finish an interrupted demo in it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .constants import METRICS_FILE, RESULTS_FILE, RESUME_FILE, TRAIN_CONFIG_FILE, WEIGHTS_FILE
from .data.idx import FASHION_MNIST_SYSTEM_DIR
from .errors import OutputExistsError
from .experiments import (
    DEMO_FULL,
    DEMO_QUICK,
    SEED,
    SHIFT_TEST,
    SWEEP_SUFFIX,
    ExperimentSettings,
    build_corrupted_set,
    ensure_fashion_mnist,
    load_trained_model,
    outcomes_by_test,
    seeded_test_images,
    training_overrides,
)
from .models._cfg import DEMO_FMNIST

if TYPE_CHECKING:
    from .robustness.results import UnitOutcomes

# (model, family); the family picks the training recipe (:func:`.experiments.training_overrides`)
DEMO_MODELS = (
    ("lenet5_a", "lenet"),
    ("lenet5_a_pp", "lenet"),
    ("resnet20", "resnet"),
    ("resnet20_pp", "resnet"),
    ("resnet20_pp_b1", "resnet"),
)
# (candidate, reference) pairs the verdicts compare
COMPARISONS = (
    ("lenet5_a_pp", "lenet5_a"),
    ("resnet20_pp", "resnet20"),
    ("resnet20_pp_b1", "resnet20"),
    ("resnet20_pp_b1", "resnet20_pp"),
)
HUB_ORG = "timm-pushpull"


def compare_models(
    candidate: Mapping[str, UnitOutcomes], reference: Mapping[str, UnitOutcomes]
) -> dict[str, dict[str, Any]]:
    """Per-test paired comparisons of two models' per-image outcomes on the same images: those
    ``evaluate`` kept beside each results.json (:func:`~.robustness.results.load_per_image`).

    Clean error: McNemar's exact test; every other test: the paired bootstrap over images of the
    per-image error (shift: agreement) averaged over severities / levels / trials
    (:mod:`.robustness.stats`). "mean corruption error" averages each image over every
    corruption and severity both runs have. Raises ValueError when a test of the two runs is on
    other images.
    """
    from .robustness.stats import mcnemar_exact, paired_bootstrap

    ours, theirs = outcomes_by_test(candidate), outcomes_by_test(reference)
    shared = [name for name in ours if name in theirs]
    for name in shared:
        if not np.array_equal(ours[name].indices, theirs[name].indices):
            raise ValueError(f"the two runs tested {name!r} on other images: no paired comparison")

    def entry(comparison, metric: str, higher_is_better: bool = False) -> dict[str, Any]:
        return dict(
            comparison.to_dict(), metric=metric, verdict=comparison.verdict(higher_is_better)
        )

    tests = {"clean": entry(mcnemar_exact(ours["clean"].values, theirs["clean"].values), "error")}
    errors = [name for name in shared if name not in ("clean", SHIFT_TEST)]
    for name in errors:
        tests[name] = entry(paired_bootstrap(ours[name].values, theirs[name].values), "error")
    if SHIFT_TEST in shared:
        tests[SHIFT_TEST] = entry(
            paired_bootstrap(ours[SHIFT_TEST].values, theirs[SHIFT_TEST].values), "consistency",
            higher_is_better=True,
        )  # fmt: skip
    corruptions = [name for name in errors if not name.endswith(SWEEP_SUFFIX)]
    if corruptions:
        tests["mean corruption error"] = entry(
            paired_bootstrap(
                np.concatenate([ours[name].values for name in corruptions]),
                np.concatenate([theirs[name].values for name in corruptions]),
            ),
            "error",
        )
    return tests


def verdict_text(candidate: str, reference: str, tests: Mapping[str, Mapping]) -> list[str]:
    """Plain sentences: where the candidate was more / less robust than the reference, with the
    paired difference and its 95% interval."""
    from .robustness.stats import NO_CLEAR_DIFFERENCE

    def fmt(name: str) -> str:
        t = tests[name]
        return (
            f"{name} ({100 * t['candidate']:.1f}% vs {100 * t['reference']:.1f}% {t['metric']}, "
            f"difference {100 * t['effect']:+.1f} points, 95% CI [{100 * t['low']:+.1f}, "
            f"{100 * t['high']:+.1f}])"
        )

    robustness = [k for k in tests if k != "clean"]
    better = [fmt(k) for k in robustness if tests[k]["verdict"] == "better"]
    worse = [fmt(k) for k in robustness if tests[k]["verdict"] == "worse"]
    unclear = [k for k in robustness if tests[k]["verdict"] == NO_CLEAR_DIFFERENCE]
    overall = tests.get("mean corruption error")
    if overall is None:
        headline = "no corruption results to compare"
    elif overall["verdict"] == NO_CLEAR_DIFFERENCE:
        headline = f"no clear difference overall: {fmt('mean corruption error')}"
    else:
        winner = candidate if overall["verdict"] == "better" else reference
        headline = f"**{winner} was more robust overall**: {fmt('mean corruption error')}"
    clean = tests["clean"]
    clean_word = {"better": "lower", "worse": "higher"}.get(clean["verdict"], NO_CLEAR_DIFFERENCE)
    return [
        f"### {candidate} vs {reference}",
        "",
        f"- {headline}.",
        f"- {candidate} was more robust on: {', '.join(better) or 'nothing'}.",
        f"- {candidate} was less robust on: {', '.join(worse) or 'nothing'}.",
        f"- No clear difference on {len(unclear)} test(s)"
        + (f": {', '.join(unclear)}." if unclear else "."),
        f"- Clean test error: {100 * clean['candidate']:.2f}% vs {100 * clean['reference']:.2f}% "
        f"(difference {100 * clean['effect']:+.2f} points, 95% CI [{100 * clean['low']:+.2f}, "
        f"{100 * clean['high']:+.2f}], McNemar p = {clean['p_value']:.3g}): {clean_word}.",
        "",
    ]


def _write_readme(out: Path, summary: Mapping, verdicts: Sequence[str]) -> None:
    s = summary["settings"]
    rows = ["| model | params | epochs | train images | train time (s) | clean test error (%) |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for name, m in summary["models"].items():
        rows.append(f"| {name} | {m['params']:,} | {m['epochs']} | {m['train_images']} | "
                    f"{m['train_time_s']:.0f} | {100 * m['clean_error']:.2f} |")  # fmt: skip
    lines = [
        "# timm-pushpull demo: baselines vs push-pull on Fashion-MNIST",
        "",
        f"Runtime: {summary['runtime_s'] / 60:.1f} min on {summary['machine']}. "
        f"Each model was trained **once** (seed {SEED}); robustness is measured on the same "
        f"{s['test_samples']} Fashion-MNIST test images for every model, corruptions at CIFAR-scale "
        f"parameters, severities {list(s['severities'])}.",
        "Models are compared on the same images: each image's errors are averaged over the "
        "severities (noise levels) of a test, and a difference counts only when its 95% interval "
        "(bootstrap over the test images; clean error: McNemar's exact test) excludes 0. "
        "Seed-to-seed variation is not measured (one run per model), so a difference says how "
        "these trained models differ, not how the architectures would on average.",
        "",
        *(
            [
                "**--quick run: a check of the pipeline; its models are barely trained, so the "
                "verdicts below say nothing about push-pull.**",
                "",
            ]
            if s["name"] == "quick"
            else []
        ),  # fmt: skip
        "## Training",
        "",
        *rows,
        "",
        "## Which model was more robust on what",
        "",
        *verdicts,
        "## Files",
        "",
        "- [report.md](report.md): the side-by-side robustness table and plots",
        "- `models/<model>/`: trained weights as Hub folders (`timm.create_model('local-dir:models/<model>')` "
        "after `import timm_pushpull`)",
        "- `robustness/<model>/results.json`, `robustness/<model>/per_image.npz` (what each image "
        "did in each test of that benchmark: the paired comparisons use these), "
        "`training/<model>/metrics.jsonl`, "
        "`summary.json`",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def run_demo(
    out: str | Path,
    settings: ExperimentSettings = DEMO_FULL,
    data_dir: str | Path | None = None,
    resume: bool = False,
    publish: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, benchmark and report (see the module docstring); returns the summary dict."""
    from .hub.publish import publish as publish_folder
    from .robustness.datasets import CifarCFolder
    from .robustness.evaluate import EvalSettings, evaluate_model
    from .robustness.report import write_report
    from .robustness.results import load_per_image
    from .training.config import build_config
    from .training.trainer import train

    start = time.perf_counter()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise OutputExistsError(
            f"{out} already holds files: choose another --out, or --resume to finish that demo"
        )
    out.mkdir(parents=True, exist_ok=True)
    data = ensure_fashion_mnist(data_dir)
    torch.manual_seed(SEED)
    timings: dict[str, float] = {}
    models: dict[str, dict[str, Any]] = {}

    for model, family in DEMO_MODELS:
        run_dir = out / "training" / model
        tic = time.perf_counter()
        if not (run_dir / WEIGHTS_FILE).is_file():
            resuming = resume and (run_dir / RESUME_FILE).is_file()
            recipe, overrides = training_overrides(
                model, family, settings, data, run_dir, resuming, progress
            )
            print(f"\n== training {model} ({recipe} recipe, shortened) ==", flush=True)
            train(build_config(recipe, overrides), recipe=recipe)
        records = [
            json.loads(x) for x in (run_dir / METRICS_FILE).read_text().splitlines() if x.strip()
        ]
        train_samples = _yaml(run_dir / TRAIN_CONFIG_FILE)["train_samples"]
        models[model] = dict(
            epochs=records[-1]["epoch"],
            train_images=train_samples or 60_000,
            train_time_s=sum(r["epoch_time_s"] for r in records),
            val_acc=records[-1]["val_acc"],
        )
        timings[f"train {model}"] = time.perf_counter() - tic

    tic = time.perf_counter()
    images, labels = seeded_test_images(data, settings.test_samples)
    from .robustness.corruptions import ALL_CORRUPTIONS

    corruptions = settings.corruptions or ALL_CORRUPTIONS
    corrupted_dir = out / "data" / "fashion-mnist-c"
    print(
        f"\n== corrupting {len(images)} test images: {len(corruptions)} corruptions ==", flush=True
    )
    build_corrupted_set(images, labels, corrupted_dir, corruptions, settings.severities)
    timings["corrupt test images"] = time.perf_counter() - tic

    results, loaded, outcomes = [], {}, {}
    evaluation_settings = EvalSettings(
        suites=("c", "noise", "shift"),
        corruptions=corruptions,
        severities=settings.severities,
        scale="cifar",
        seed=SEED,
        noise_levels=settings.noise_levels or None,
    )
    for model, _ in DEMO_MODELS:
        tic = time.perf_counter()
        net = load_trained_model(out / "training" / model)
        loaded[model] = net
        print(f"\n== robustness of {model} ==", flush=True)
        result = evaluate_model(
            net,
            images,
            labels,
            evaluation_settings,
            corrupted=CifarCFolder(corrupted_dir),
            out_dir=out / "robustness" / model,
            model_name=model,
            dataset_names=dict(
                clean="fashion_mnist test", c="fashion-mnist-c (generated, CIFAR scale)"
            ),
            device="cpu",
            batch_size=settings.eval_batch_size,
            progress=progress,
        )
        results.append(result)
        outcomes[model] = load_per_image(out / "robustness" / model, result)
        models[model].update(
            clean_error=result["clean_error"], params=sum(p.numel() for p in net.parameters())
        )
        timings[f"robustness {model}"] = time.perf_counter() - tic

    tic = time.perf_counter()
    sample = torch.from_numpy(images[:4]).float().div(255).unsqueeze(1)
    write_report(
        results, out, models=loaded, sample_images=sample, labels=[m for m, _ in DEMO_MODELS]
    )
    comparisons, verdicts = {}, []
    for candidate, reference in COMPARISONS:
        tests = compare_models(outcomes[candidate], outcomes[reference])
        comparisons[f"{candidate} vs {reference}"] = tests
        verdicts += verdict_text(candidate, reference, tests)
    if publish:
        for model, _ in DEMO_MODELS:
            target = out / "models" / model
            if not (target / WEIGHTS_FILE).is_file():
                publish_folder(out / "training" / model, f"{HUB_ORG}/{model}.{DEMO_FMNIST}",
                               results=out / "robustness" / model / RESULTS_FILE, dry_run=target)  # fmt: skip
    timings["report"] = time.perf_counter() - tic

    summary = dict(
        runtime_s=time.perf_counter() - start,
        machine=f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
        runs_per_model=1,
        seed=SEED,
        settings=asdict(settings),
        models=models,
        comparisons=comparisons,
        timings_s=timings,
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _write_readme(out, summary, verdicts)
    print("\n" + "\n".join(line for line in verdicts if line), flush=True)
    print(f"\nReport: {out / 'README.md'} (tables and plots: {out / 'report.md'}); "
          f"runtime {summary['runtime_s'] / 60:.1f} min", flush=True)  # fmt: skip
    return summary


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument(
        "--out", default="timm-pushpull-demo", help="report folder (must not hold files)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run (~1 minute) to check the pipeline"
    )
    parser.add_argument(
        "--data-dir", help=f"Fashion-MNIST IDX files (default: {FASHION_MNIST_SYSTEM_DIR})"
    )
    parser.add_argument("--resume", action="store_true", help="finish an interrupted demo in --out")
    parser.add_argument("--no-publish", dest="publish", action="store_false",
                        help="skip writing the Hub model folders under models/")  # fmt: skip
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )
    parser.add_argument("--test-samples", type=int, help="test images for accuracy and robustness")
    parser.add_argument("--epochs", type=int, help="epochs of every model")


def main(args: argparse.Namespace) -> int:
    settings = DEMO_QUICK if args.quick else DEMO_FULL
    if args.test_samples:
        settings = replace(settings, test_samples=args.test_samples)
    if args.epochs:
        settings = replace(settings, lenet_epochs=args.epochs, resnet_epochs=args.epochs)
    run_demo(args.out, settings, args.data_dir, args.resume, args.publish, args.progress)
    return 0
