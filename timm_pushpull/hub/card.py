"""What a model card says: the training dataset, the hub config, the robustness results, the plot.

The card is rendered from the ``MODEL_CARD.md`` template by ``huggingface_hub.ModelCard``, with
Hub metadata (``model-index``) built from the results of ``timm-pushpull evaluate`` or from the
push-pull authors' released results.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import timm.layers
import torch.nn as nn
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..constants import METRICS_FILE, TRAIN_CONFIG_FILE
from ..data.idx import FASHION_MNIST_CLASSES
from ..errors import CheckpointError, InvalidArgumentError, MissingFileError
from ..layers import BlurPool2d, PushPull2d
from ..models._cfg import (
    HUB_CONFIGS_DIR,
    OFFICIAL_C10,
    PAPER_ANTIALIAS,
    PAPER_PUSHPULL,
    current_model_name,
)
from ..models.official import OFFICIAL_CHECKPOINTS, ORIGIN_URL
from ..robustness.baselines import ALEXNET_CIFAR10_C, get_baseline, read_official_results
from ..robustness.metrics import flip_rates, mean_corruption_error, summarize_corruptions
from ..robustness.results import array_sha256, load_results
from ..version import __version__

__all__ = [
    "DATASETS",
    "MODEL_CARD_TEMPLATE",
    "DatasetInfo",
    "HubConfig",
    "RobustnessResults",
    "check_card",
    "evaluation_results",
    "evaluated_images",
    "official_results",
    "paper_ids",
    "plot_robustness",
    "render_card",
]

# The card template and hub_configs/ live at the top of the repository; the package holds
# symlinks to them, which the wheel turns into copies (package data), so installs find them too.
MODEL_CARD_TEMPLATE = Path(__file__).resolve().parents[1] / "MODEL_CARD.md"
# blur-pool layers, ours and timm's (a timm model with timm's aa_layer can be published too)
BLUR_LAYERS = (BlurPool2d, timm.layers.BlurPool2d)


@dataclass(frozen=True)
class DatasetInfo:
    """How a training dataset is named on the Hub and in the robustness benchmarks."""

    name: str
    hub_id: str
    corrupted: str  # the -C benchmark's name
    perturbed: str  # the -P benchmark's name
    label_names: tuple[str, ...] = ()
    test_images: int | None = None  # size of the split the benchmarks take their images from


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        "CIFAR-10", "uoft-cs/cifar10", "CIFAR-10-C", "CIFAR-10-P", CIFAR10_CLASSES, 10_000
    ),
    "fashion_mnist": DatasetInfo(
        "Fashion-MNIST",
        "zalando-datasets/fashion_mnist",
        "Fashion-MNIST-C (timm-pushpull corruptions)",
        "Fashion-MNIST-P (timm-pushpull perturbations)",
        FASHION_MNIST_CLASSES,
        10_000,
    ),
    "imagenet": DatasetInfo(
        "ImageNet-1k", "ILSVRC/imagenet-1k", "ImageNet-C", "ImageNet-P", (), 50_000
    ),
}

_RESULTS_KEYS = {
    "official": "the authors' results folder of the model, relative to <--official-dir>/results",
    "flip_baseline": "the same for the model its flip rates are relative to (mFR)",
    "attribution": "who measured the numbers",
    "source_url": "where they were published",
}
_HUB_CONFIG_KEYS = {
    "repo_id": "ORG/NAME of the Hub repository",
    "published": "true once repo_id is uploaded: gives the model's tag its Hub id (pretrained=True)",
    "model": "architecture[.tag] the weights belong to (its pretrained cfg fills config.json)",
    "model_args": "model kwargs needed to rebuild the architecture from a checkpoint file",
    "dataset": f"training dataset, one of {sorted(DATASETS)}",
    "license": "license id of the weights (Hub metadata), e.g. mit, apache-2.0",
    "title": "first heading of the card",
    "summary": "what the model is, one paragraph",
    "tags": "extra Hub tags",
    "weights_origin": "where the weights come from, when not trained by this project",
    "training": "mapping shown as 'how it was trained' (recipe, epochs, augmentation, ...)",
    "results": f"numbers not measured by `timm-pushpull evaluate`: {_RESULTS_KEYS}",
    "notes": "extra paragraphs for the card",
}


@dataclass
class HubConfig:
    """One file of ``hub_configs/``: where a model goes and what its card says."""

    repo_id: str | None = None
    published: bool = False
    model: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    license: str | None = None
    title: str | None = None
    summary: str | None = None
    tags: list[str] = field(default_factory=list)
    weights_origin: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> HubConfig:
        """Read a YAML (or JSON, a subset of YAML) hub config, rejecting unknown keys."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise InvalidArgumentError(
                f"--hub-config {path} is not a readable YAML file: {error}"
            ) from error
        if not isinstance(data, dict):
            raise InvalidArgumentError(
                f"--hub-config {path} must be a mapping of {sorted(_HUB_CONFIG_KEYS)}"
            )
        unknown = sorted(set(data) - set(_HUB_CONFIG_KEYS))
        if unknown:
            allowed = "; ".join(f"{k}: {v}" for k, v in _HUB_CONFIG_KEYS.items())
            raise InvalidArgumentError(
                f"--hub-config {path}: unknown keys {unknown}; allowed: {allowed}"
            )
        unknown = sorted(set(data.get("results") or {}) - set(_RESULTS_KEYS))
        if unknown:
            raise InvalidArgumentError(
                f"--hub-config {path}: unknown results keys {unknown}; allowed: {_RESULTS_KEYS}"
            )
        if data.get("dataset") is not None and data["dataset"] not in DATASETS:
            raise InvalidArgumentError(
                f"--hub-config {path}: dataset must be one of {sorted(DATASETS)}"
            )
        if isinstance(data.get("model"), str):
            data["model"] = current_model_name(data["model"])  # a deprecated tag: renamed, warns
        return cls(**data, path=path)


@dataclass
class RobustnessResults:
    """Everything a card shows about robustness. Errors and probabilities are fractions.

    ``summary`` is the summary block of results.json, in its format
    (:func:`~timm_pushpull.robustness.results.summarize`; the authors' released results fill the
    keys they have): mCE / relative mCE are ratios to ``ce_baseline``, the mFR a ratio to
    ``flip_baseline`` (Hendrycks & Dietterich 2019), the mean flip probability is unnormalised.
    ``source_name``/``source_url`` attribute numbers this project did not measure. What was run:
    the corruption ``severities``, ``n_images`` test images, all of them (``whole_set``) or a
    fixed random subset drawn with ``subset_seed`` (``None``: not recorded).
    """

    severities: list[int] = field(default_factory=lambda: list(range(1, 6)))
    n_images: int | None = None
    whole_set: bool | None = None
    subset_seed: int | None = None
    clean_error: float | None = None
    corruption_errors: dict[str, list[float]] = field(default_factory=dict)
    flip_probabilities: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    ce_baseline: str | None = None
    flip_baseline: str | None = None
    shift_consistency: float | None = None
    source_name: str | None = None
    source_url: str | None = None

    def has_robustness(self) -> bool:
        ratios = (self.summary.get(key) for key in ("mce", "relative_mce", "mfr"))
        return any(value is not None for value in (*ratios, self.shift_consistency)) or bool(
            self.corruption_errors or self.flip_probabilities
        )


def official_results(
    architecture: str, folder: Path, flip_baseline: Path | None = None
) -> RobustnessResults:
    """The push-pull authors' CIFAR-10-C/-P text results of a released model.

    The clean error is the one of the authors' evaluation that produced these results (the last
    "Test accuracy clean" of ``test_clean.txt``), so that relative CE subtracts a clean error
    measured with the corrupted ones; where the folder has no ``test_clean.txt`` (the ResNets) it
    is the checkpoint's ``best_prec1``. CE and relative CE are normalised by AlexNet as in their
    paper; the mFR, when ``flip_baseline`` names another
    model's results folder (the same network without push-pull), is relative to that model.
    """
    if architecture not in OFFICIAL_CHECKPOINTS:
        raise InvalidArgumentError(
            f"{architecture!r} is not a released model; those are {sorted(OFFICIAL_CHECKPOINTS)}"
        )
    if not (folder / "C_details.txt").is_file():
        raise MissingFileError(
            f"no C_details.txt in {folder}: pass --official-dir, the folder of the authors' release"
        )
    raw = read_official_results(folder)
    clean_error = raw["clean_error"]
    if clean_error is None:
        clean_error = round(1 - OFFICIAL_CHECKPOINTS[architecture].top1 / 100, 6)
    summary = summarize_corruptions(
        raw["corruptions"],
        clean_error,
        ALEXNET_CIFAR10_C.corruption_errors,
        ALEXNET_CIFAR10_C.clean_error,
        ALEXNET_CIFAR10_C.mce_corruptions,
    )
    results = RobustnessResults(
        clean_error=clean_error,
        corruption_errors=raw["corruptions"],
        flip_probabilities=raw["perturbations"],
        summary=summary,
        ce_baseline=ALEXNET_CIFAR10_C.source,
        source_name="Strisciuglio et al. 2020, released results",
        source_url=ORIGIN_URL,
        severities=list(range(1, 1 + max(map(len, raw["corruptions"].values()), default=5))),
        whole_set=True,  # their CIFAR-10-C/-P runs: the whole released sets
    )
    if raw["perturbations"]:
        summary["mean_flip_probability"] = mean_corruption_error(raw["perturbations"])
    if flip_baseline is not None:
        baseline = get_baseline(flip_baseline)
        rates = flip_rates(raw["perturbations"], baseline.flip_probabilities)
        if rates:
            summary["flip_rates"], summary["mfr"] = rates, mean_corruption_error(rates)
            results.flip_baseline = f"{flip_baseline.name} (authors' results)"
    return results


def evaluation_results(path: Path) -> RobustnessResults:
    """The results.json of ``timm-pushpull evaluate`` (format: :mod:`.robustness.results`)."""
    try:
        data = load_results(path)
    except FileNotFoundError as error:
        raise MissingFileError(str(error)) from error
    except ValueError as error:
        raise InvalidArgumentError(str(error)) from error
    summary = dict(data["summary"] or {})
    # version 1 files have no relative-mCE flags of their own: the mCE's
    summary.setdefault("relative_mce_corruptions", summary.get("mce_corruptions"))
    summary.setdefault("relative_mce_complete", summary.get("mce_complete", False))
    baseline = (data["baseline"] or {}).get("source")
    settings, identity = data.get("settings") or {}, data.get("identity") or {}
    n_images, subset = data.get("n_images"), identity.get("subset_sha256")
    return RobustnessResults(
        severities=list(settings.get("severities") or range(1, 6)),
        n_images=n_images,
        # evaluate hashes the indices of the images it took: 0..n-1 when it took them all
        whole_set=None
        if n_images is None or subset is None
        else _indices_sha256(n_images) == subset,
        subset_seed=settings.get("seed"),
        clean_error=data["clean_error"],
        corruption_errors={k: list(v["errors"]) for k, v in data["corruptions"].items()},
        flip_probabilities={
            k: float(v["flip_probability"]) for k, v in data["perturbations"].items()
        },
        summary=summary,
        ce_baseline=baseline if summary.get("mce") is not None else None,
        flip_baseline=baseline if summary.get("mfr") is not None else None,
        shift_consistency=(data["shift"] or {}).get("consistency"),
    )


def cited_papers(model: nn.Module, tag: str | None = None) -> dict[str, bool]:
    """Which layer papers the card cites: those of the layers in the model.

    The push-pull paper also for a baseline whose weights come from its authors' release
    (``tag`` ``official_c10``).
    """
    pushpull = [m for m in model.modules() if isinstance(m, PushPull2d)]
    return {
        "pushpull": bool(pushpull) or tag == OFFICIAL_C10,
        "antialias": any(isinstance(m, BLUR_LAYERS) for m in model.modules()),
        "pushpull_variants": any(
            not m.rectify or m.attention_type or isinstance(m.pull_scale, tuple) for m in pushpull
        ),
        "pushpull_layers": bool(pushpull),
    }


PAPER_IDS = {
    "pushpull": PAPER_PUSHPULL,
    "antialias": PAPER_ANTIALIAS,
}


def paper_ids(model: nn.Module, tag: str | None = None) -> list[str]:
    """The model's ``paper_ids`` for config.json: its pretrained cfg's (architecture papers),
    with the layer papers (:data:`PAPER_IDS`) only where :func:`cited_papers` says so (a model
    cfg lists the blur-pool paper whether or not ``aa`` was given)."""
    listed = model.pretrained_cfg.get("paper_ids") or ()
    listed = [listed] if isinstance(listed, str) else list(listed)
    papers = cited_papers(model, tag)
    kept = [p for p in listed if p not in PAPER_IDS.values()]
    return list(dict.fromkeys(kept + [PAPER_IDS[k] for k in PAPER_IDS if papers[k]]))


def _indices_sha256(n_images: int) -> str:
    return array_sha256(np.arange(n_images))


def evaluated_images(results: RobustnessResults, dataset: DatasetInfo) -> str:
    """Which test images the numbers are on, in words (\"100 of the 10,000 ... (a fixed random
    subset, seed 0)\")."""
    test_set = f"{dataset.name} test images"
    if results.whole_set and results.n_images is None:
        return (
            f"all {dataset.test_images:,} {test_set}" if dataset.test_images else f"all {test_set}"
        )
    if results.n_images is None:
        return f"the {dataset.name} test set (image count not recorded)"
    if results.whole_set:
        return f"all {results.n_images:,} {test_set}"
    of = f" of the {dataset.test_images:,}" if dataset.test_images else ""
    kind = (
        f"a fixed random subset, seed {results.subset_seed}"
        if results.whole_set is False
        else "whether all or a subset is not recorded"
    )
    return f"{results.n_images:,}{of} {test_set} ({kind})"


def _percent_value(value: float | None) -> float | None:
    return None if value is None else round(100 * float(value), 2)


def _summary_rows(results: RobustnessResults, dataset: DatasetInfo) -> list[dict[str, Any]]:
    """(metric, value, definition, model-index fields) for every result the card shows."""
    flips = len(results.flip_probabilities)
    severities = f"severities {', '.join(map(str, results.severities))}"
    summary = results.summary

    def partial(complete: bool) -> str:
        return "" if complete else " (not all the baseline's: not comparable with published ones)"

    candidates = [
        ("Clean error (%)", "error", results.clean_error, dataset.name,
         f"top-1 error on {evaluated_images(results, dataset)}"),
        ("Mean corruption error (%)", "mean_corruption_error",
         summary.get("mean_corruption_error"), dataset.corrupted,
         f"unnormalised top-1 error, mean over {len(results.corruption_errors)} corruptions "
         f"({severities})"),
        ("mCE (%)", "mCE", summary.get("mce"), dataset.corrupted,
         f"mean over {len(summary.get('mce_corruptions') or [])} corruptions ({severities}) of "
         f"the corruption error, normalised by {results.ce_baseline}"
         f"{partial(summary.get('mce_complete', False))}"),
        ("Relative mCE (%)", "relative_mCE", summary.get("relative_mce"), dataset.corrupted,
         f"mean over {len(summary.get('relative_mce_corruptions') or [])} corruptions "
         f"({severities}) of the relative corruption error (degradation from clean), same "
         f"baseline{partial(summary.get('relative_mce_complete', False))}"),
        ("mFR (%)", "mFR", summary.get("mfr"), dataset.perturbed,
         f"mean flip rate: flip probability normalised by {results.flip_baseline}"),
        ("Mean flip probability (%)", "mean_flip_probability",
         summary.get("mean_flip_probability"), dataset.perturbed,
         f"unnormalised, mean over {flips} perturbations"),
        ("Shift consistency (%)", "shift_consistency", results.shift_consistency, dataset.name,
         "how often the top-1 class agrees for two random shifts of an image (Zhang 2019)"),
    ]  # fmt: skip
    return [
        dict(
            name=name,
            metric_type=kind,
            value=_percent_value(value),
            dataset_name=ds,
            definition=text,
        )
        for name, kind, value, ds, text in candidates
        if value is not None
    ]


def _eval_results(
    rows: list[dict], dataset: DatasetInfo, results: RobustnessResults
) -> list[EvalResult]:
    """model-index entries; ``dataset.args`` says which images and severities they are on."""
    images: dict[str, Any] = {}
    if results.n_images is not None:
        images["n_images"] = results.n_images
    if results.whole_set is not None:
        images["subset"] = "all" if results.whole_set else f"random, seed {results.subset_seed}"
    corrupted = {**images, "severities": list(results.severities)}
    return [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=dataset.hub_id
            if row["dataset_name"] == dataset.name
            else row["dataset_name"],
            dataset_name=row["dataset_name"],
            dataset_split="test",
            dataset_args=(corrupted if row["dataset_name"] == dataset.corrupted else images)
            or None,
            metric_type=row["metric_type"],
            metric_name=row["name"],
            metric_value=row["value"],
            source_name=results.source_name,
            source_url=results.source_url,
        )
        for row in rows
    ]


def plot_robustness(results: RobustnessResults, path: Path, title: str) -> bool:
    """Bar charts of the error per corruption and the flip probability per perturbation."""
    if not results.corruption_errors and not results.flip_probabilities:
        return False
    # Figure without pyplot: no GUI backend and no global figure state, just a file
    from matplotlib.figure import Figure

    panels = [p for p in (results.corruption_errors, results.flip_probabilities) if p]
    fig = Figure(figsize=(6 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, values in zip(axes[0], panels, strict=True):
        names = list(values)
        if values is results.corruption_errors:
            heights = [100 * sum(v) / len(v) for v in values.values()]
            ax.set_ylabel("top-1 error (%), mean over severities")
            if results.clean_error is not None:
                ax.axhline(100 * results.clean_error, color="black", linestyle="--", label="clean")
                ax.legend()
        else:
            heights = [100 * v for v in values.values()]
            ax.set_ylabel("flip probability (%)")
        ax.bar(range(len(names)), heights, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=75, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def render_card(
    model: nn.Module,
    repo_id: str,
    hub_config: HubConfig,
    results: RobustnessResults,
    training: Mapping[str, Any],
    plot: str | None,
    template: Path = MODEL_CARD_TEMPLATE,
) -> ModelCard:
    """The model card: Hub metadata (with ``model-index``) and the text of ``MODEL_CARD.md``."""
    if not template.is_file():
        raise MissingFileError(f"card template {template} not found: pass --card-template")
    cfg = model.pretrained_cfg
    architecture, tag = cfg["architecture"], cfg.get("tag")
    dataset = DATASETS[hub_config.dataset]
    rows = _summary_rows(results, dataset)
    papers = cited_papers(model, tag)
    license_id = hub_config.license or cfg.get("license") or "apache-2.0"
    # only claim `name.tag` with pretrained=True loads this when its cfg points at this repo
    registered_name = f"{architecture}.{tag}" if tag else None
    if registered_name and _registered_hub_id(registered_name) != repo_id:
        registered_name = None
    card_data = ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        license=license_id,
        tags=["image-classification", "timm", "timm-pushpull", "robustness",
              *(["push-pull"] if papers["pushpull_layers"] else []),
              *(["anti-aliasing"] if papers["antialias"] else []), *hub_config.tags],
        datasets=[dataset.hub_id],
        metrics=sorted({row["metric_type"] for row in rows}),
        model_name=repo_id.split("/")[-1],
        eval_results=_eval_results(rows, dataset, results),
    )  # fmt: skip
    corruption_rows = [
        dict(
            name=name,
            errors=[f"{100 * e:.2f}" for e in errs],
            mean=f"{100 * sum(errs) / len(errs):.2f}",
        )
        for name, errs in results.corruption_errors.items()
    ]
    perturbation_rows = [
        dict(name=name, value=f"{100 * value:.2f}")
        for name, value in results.flip_probabilities.items()
    ]
    input_size = tuple(cfg["input_size"])
    mean = ", ".join(f"{m:.4f}" for m in cfg["mean"])
    std = ", ".join(f"{s:.4f}" for s in cfg["std"])
    details = [
        ("Architecture", f"`{architecture}`"),
        ("Model args", f"`{json.dumps(getattr(model, '_model_args', {}) or {})}`"),
        ("Parameters", f"{sum(p.numel() for p in model.parameters()) / 1e6:.3f} M"),
        ("Input size", " x ".join(str(s) for s in input_size)),
        (
            "Dataset",
            f"{dataset.name} ([{dataset.hub_id}](https://huggingface.co/datasets/{dataset.hub_id}))",
        ),
        ("Classes", model.num_classes),
        ("Papers", ", ".join(paper_ids(model, tag))),
        ("Library", f"timm {timm.__version__}, timm-pushpull {__version__}"),
    ]
    license_text = {
        "mit": "MIT. The weights carry the MIT license of their authors; LICENSE holds its text.",
        "apache-2.0": "Apache-2.0, like timm-pushpull.",
    }.get(license_id, license_id)
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        title=hub_config.title or repo_id.split("/")[-1],
        summary=(hub_config.summary or cfg.get("description") or "").strip(),
        weights_origin=hub_config.weights_origin,
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        registered_name=registered_name,
        input_description=(
            f"{input_size[0]} x {input_size[1]} x {input_size[2]} images scaled to [0, 1], "
            f"normalised with mean ({mean}) and std ({std})"
        ),
        details=details,
        training=list(training.items()),
        results_attribution=_attribution(results),
        summary_rows=rows,
        plot=plot,
        corrupted_name=dataset.corrupted,
        perturbed_name=dataset.perturbed,
        severities=results.severities,
        evaluated=evaluated_images(results, dataset),
        corruption_rows=corruption_rows,
        perturbation_rows=perturbation_rows,
        notes=[n.strip() for n in hub_config.notes],
        license_text=license_text,
        cite_pushpull=papers["pushpull"],
        cite_antialias=papers["antialias"],
        cite_variants=papers["pushpull_variants"],
    )


def _attribution(results: RobustnessResults) -> str:
    if results.source_name:
        return (
            f"Numbers reported by the authors, not measured by timm-pushpull: "
            f"{results.source_name} ({results.source_url})."
        )
    return "Measured with `timm-pushpull evaluate`."


def _registered_hub_id(model_name: str) -> str | None:
    """The repository of the registered tag ``model_name`` per its hub config (the tag's Hub id
    once the config says ``published: true``, which follows the upload)."""
    path = HUB_CONFIGS_DIR / f"{model_name}.yaml"
    return HubConfig.load(path).repo_id if path.is_file() else None


def training_facts(source: Path, hub_config: HubConfig) -> dict[str, Any]:
    """'How it was trained': the hub config's entries, then what the run directory recorded
    (``train_config.yaml`` and ``metrics.jsonl`` of ``timm-pushpull train``)."""
    facts = dict(hub_config.training)
    run_config = source / TRAIN_CONFIG_FILE if source.is_dir() else None
    if run_config is not None and run_config.is_file():
        cfg = yaml.safe_load(run_config.read_text(encoding="utf-8")) or {}
        crop = {
            "pad": f"random crop with {cfg.get('padding')} px padding",
            "rrc": "random resized crop",
        }
        augmentation = [crop.get(cfg.get("crop"), "")] + [
            f"{key} {cfg[key]}"
            for key in ("hflip", "auto_augment", "cutout", "color_jitter")
            if cfg.get(key) not in (None, 0, 0.0, False)
        ]
        recorded = {
            "Dataset": cfg.get("dataset")
            + (f" ({cfg['train_samples']} training images)" if cfg.get("train_samples") else ""),
            "Epochs": cfg.get("epochs"),
            "Optimizer": f"{cfg.get('opt')}, lr {cfg.get('lr')}, momentum {cfg.get('momentum')}, "
            f"weight decay {cfg.get('weight_decay')}, batch {cfg.get('batch_size')}",
            "Schedule": f"{cfg.get('sched')}, milestones {cfg.get('milestones')}, gamma {cfg.get('gamma')}",
            "Augmentation": ", ".join(a for a in augmentation if a) or "none",
            "Label smoothing": cfg.get("label_smoothing") or None,
            "Started from": cfg.get("init_from"),
            "Seed": cfg.get("seed"),
        }
        facts.update({k: v for k, v in recorded.items() if v is not None and k not in facts})
    metrics_log = source / METRICS_FILE if source.is_dir() else None
    if metrics_log is not None and metrics_log.is_file():
        records = [
            json.loads(line) for line in metrics_log.read_text().splitlines() if line.strip()
        ]
        if records:
            last = records[-1]
            facts.setdefault(
                "Trained for",
                f"{last.get('epoch')} epochs, {last.get('step')} steps; final validation accuracy "
                f"{last.get('val_acc', float('nan')):.2f}%",
            )
    if not facts:
        raise InvalidArgumentError(
            f"nothing says how {source} was trained: add a 'training' mapping to the hub config "
            "(recipe, epochs, augmentation)"
        )
    return facts


def training_dataset(source: Path, hub_config: HubConfig) -> str:
    """The hub config's dataset, else the one the run directory was trained on."""
    dataset = hub_config.dataset
    if dataset is None and source.is_dir() and (source / TRAIN_CONFIG_FILE).is_file():
        dataset = (yaml.safe_load((source / TRAIN_CONFIG_FILE).read_text()) or {}).get("dataset")
    if dataset not in DATASETS:
        raise InvalidArgumentError(
            f"the card needs the training dataset, one of {sorted(DATASETS)}: set 'dataset' in "
            f"the hub config (found {dataset!r})"
        )
    return dataset


def check_card(path: Path) -> ModelCard:
    """Parse a written card back and require timm metadata and a model-index with results."""
    card = ModelCard.load(path)
    if card.data.library_name != "timm" or not card.data.eval_results:
        raise CheckpointError(f"{path} lacks library_name: timm or a model-index with results")
    return card
