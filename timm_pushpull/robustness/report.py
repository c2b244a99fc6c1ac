"""Robustness report: side-by-side table, markdown, plots (``timm-pushpull compare`` prints and
writes them: :mod:`.cli.compare`).

Plots (PNG, matplotlib's object API with the Agg canvas, so no display or global backend is
touched): error per corruption of each model next to the baseline's, CE (or error) against flip
probability, noise-sweep curves, a histogram of the first-block weights (with their Hoyer
sparsity) and the response maps of the first layer to a clean and a noisy image. Every plot works
for any timm model: the first layer is the first convolution (or push-pull layer), the first block
that layer plus the convolutions of the first stage timm's ``feature_info`` names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .results import mean_error_corruptions

__all__ = [
    "format_comparison",
    "ce_pairs",
    "write_report",
    "plot_corruption_errors",
    "plot_ce_vs_flip",
    "plot_noise_sweeps",
    "plot_weight_histograms",
    "plot_response_maps",
    "first_layer",
    "first_block_weights",
    "hoyer_sparsity",
]

REPORT_FILE = "report.md"


def _labels(results: Sequence[Mapping]) -> list[str]:
    """Column names: the model names, numbered where two runs share one."""
    names = [str(r.get("model", f"run {i + 1}")) for i, r in enumerate(results)]
    return [f"{n} ({i + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _format_percent(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def _with_ratio(value: float | None, ratio: float | None, what: str) -> str:
    if value is None:
        return "–"
    return (
        _format_percent(value)
        if ratio is None
        else f"{_format_percent(value)} ({what} {_format_percent(ratio, 1)})"
    )


def format_comparison(results: Sequence[Mapping], labels: Sequence[str] | None = None) -> str:
    """Markdown table of several results.json side by side (errors in %, CE/FR in % of baseline).

    The first run's baseline, when it has one, gets its own column.
    """
    labels = list(labels or _labels(results))
    baseline = results[0].get("baseline") if results else None
    columns = labels + ([f"baseline: {baseline['name']}"] if baseline else [])
    rows: list[tuple[str, list[str]]] = []

    def add(name: str, cells: list[str], baseline_cell: str = "–") -> None:
        rows.append((name, cells + ([baseline_cell] if baseline else [])))

    summaries = [r.get("summary") or {} for r in results]
    add("images", [str(r.get("n_images", "–")) for r in results])
    add("clean error", [_format_percent(r.get("clean_error")) for r in results],
        _format_percent(baseline.get("clean_error")) if baseline else "–")  # fmt: skip
    corruptions = _union(r.get("corruptions") or {} for r in results)
    if corruptions:
        left_out = sorted({name for r in results for name in r.get("corruptions") or {}
                           if name not in mean_error_corruptions(r)})  # fmt: skip
        add(
            "mean corruption error"
            + (f" (not of {', '.join(left_out)}: grey images)" if left_out else ""),
            [_format_percent(s.get("mean_corruption_error")) for s in summaries],
        )
        add("mCE", [_mce_cell(s, "mce") for s in summaries])
        add("relative mCE", [_mce_cell(s, "relative_mce") for s in summaries])
        if baseline:
            add("CE on severities", [ce_pairs(s) for s in summaries])
        for name in corruptions:
            cells = []
            for r, s in zip(results, summaries, strict=True):
                entry = (r.get("corruptions") or {}).get(name)
                ratio = (s.get("ce") or {}).get(name)
                cells.append(_with_ratio(entry and entry["mean_error"], ratio, "CE"))
            base = baseline and baseline.get("corruption_errors", {}).get(name)
            add(f"error: {name}", cells, _format_percent(base))
    perturbations = _union(r.get("perturbations") or {} for r in results)
    if perturbations:
        add(
            "mean flip probability",
            [_format_percent(s.get("mean_flip_probability")) for s in summaries],
        )
        add("mFR", [_format_percent(s.get("mfr"), 1) for s in summaries])
        for name in perturbations:
            cells = []
            for r, s in zip(results, summaries, strict=True):
                entry = (r.get("perturbations") or {}).get(name)
                ratio = (s.get("flip_rates") or {}).get(name)
                cells.append(_with_ratio(entry and entry["flip_probability"], ratio, "FR"))
            base = baseline and baseline.get("flip_probabilities", {}).get(name)
            add(f"flip probability: {name}", cells, _format_percent(base))
    if any(r.get("shift") for r in results):
        cells = [_format_percent((r.get("shift") or {}).get("consistency")) for r in results]
        add("shift consistency", cells)
    for sweep in _union(r.get("noise_sweeps") or {} for r in results):
        curves = [(r.get("noise_sweeps") or {}).get(sweep) for r in results]
        shown = next(c for c in curves if c)
        levels = " / ".join(f"{v:g}" for v in shown["levels"])
        cells = [
            "–" if not c else " / ".join(_format_percent(e, 1) for e in c["errors"]) for c in curves
        ]
        add(f"error: {sweep.replace('_', ' + ')} noise, {shown['parameter']} {levels}", cells)
    header = "| metric (%) | " + " | ".join(columns) + " |"
    separator = "|---|" + "---|" * len(columns)
    lines = [header, separator] + [
        f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows
    ]
    return "\n".join(lines)


def _mce_cell(summary: Mapping, key: str) -> str:
    value = summary.get(key)
    if value is None:
        return "–"
    # version 1 results have no flags for the relative mCE: it covers the mCE's corruptions
    names = summary.get(f"{key}_corruptions", summary.get("mce_corruptions")) or []
    complete = summary.get(f"{key}_complete", summary.get("mce_complete"))
    return f"{_format_percent(value, 1)}{'' if complete else f', {len(names)} corruptions'}"


def ce_pairs(summary: Mapping) -> str:
    """The (corruption, severity) pairs CEs were computed on: the severities both the run and
    the baseline have, e.g. ``"1, 2, 3, 4, 5"`` or ``"fog: 3; snow: 3, 4"``."""
    pairs = summary.get("ce_severities") or {}
    if not pairs:
        return "–"
    texts = {name: ", ".join(str(s) for s in severities) for name, severities in pairs.items()}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return "; ".join(f"{name}: {text}" for name, text in texts.items())


def _union(mappings) -> list[str]:
    names: dict[str, None] = {}
    for mapping in mappings:
        names.update(dict.fromkeys(mapping))
    return list(names)


# ----------------------------------------------------------------------------------------------
# plots


def new_figure(width: float, height: float):
    """A matplotlib figure of ``width`` x ``height`` inches for the package's reports."""
    # The object API with an explicit Agg canvas: no pyplot state, no display, thread safe.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_corruption_errors(results: Sequence[Mapping], path: str | Path, labels=None) -> Path:
    """Grouped bars: error per corruption (mean over severities) of each model and the baseline."""
    labels = list(labels or _labels(results))
    names = _union(r.get("corruptions") or {} for r in results)
    series = [(label, [(r.get("corruptions") or {}).get(n, {}).get("mean_error", np.nan) for n in names])
              for label, r in zip(labels, results, strict=True)]  # fmt: skip
    baseline = results[0].get("baseline")
    if baseline:
        errors = baseline.get("corruption_errors", {})
        series.insert(0, (f"baseline: {baseline['name']}", [errors.get(n, np.nan) for n in names]))
    figure = new_figure(max(6.0, 0.55 * len(names) * max(1, len(series)) / 2 + 2), 4.2)
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    positions = np.arange(len(names))
    for number, (label, values) in enumerate(series):
        axes.bar(positions + (number - (len(series) - 1) / 2) * width, 100 * np.asarray(values, float),
                 width, label=label)  # fmt: skip
    axes.set_xticks(positions, [n.replace("_", " ") for n in names], rotation=45, ha="right")
    axes.set_ylabel("error (%), mean over severities")
    axes.set_title("Error per corruption")
    axes.legend(fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)


def plot_ce_vs_flip(results: Sequence[Mapping], path: str | Path, labels=None) -> Path:
    """Corruption robustness against stability: one large marker per model (mCE or mean error vs
    mean flip probability) and small ones per corruption that also exists as a perturbation."""
    labels = list(labels or _labels(results))
    figure = new_figure(6.0, 4.5)
    axes = figure.add_subplot()
    use_ce = all((r.get("summary") or {}).get("mce") is not None for r in results)
    for number, (label, r) in enumerate(zip(labels, results, strict=True)):
        summary = r.get("summary") or {}
        color = f"C{number}"
        corruptions, perturbations = r.get("corruptions") or {}, r.get("perturbations") or {}
        for name in set(corruptions) & set(perturbations):
            x = summary["ce"].get(name) if use_ce else corruptions[name]["mean_error"]
            if x is not None:
                axes.scatter(100 * x, 100 * perturbations[name]["flip_probability"], s=18,
                             color=color, alpha=0.5)  # fmt: skip
                axes.annotate(name.replace("_", " "), (100 * x, 100 * perturbations[name]["flip_probability"]),
                              fontsize=6, alpha=0.7)  # fmt: skip
        x = summary.get("mce") if use_ce else summary.get("mean_corruption_error")
        y = summary.get("mean_flip_probability")
        if x is not None and y is not None:
            axes.scatter(
                100 * x, 100 * y, s=90, color=color, marker="D", label=label, edgecolor="black"
            )
    axes.set_xlabel("CE (% of baseline)" if use_ce else "corruption error (%)")
    axes.set_ylabel("flip probability (%)")
    axes.set_title("Corruption error vs. flip probability (diamond: mean)")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")
    return save_figure(figure, path)


def plot_noise_sweeps(results: Sequence[Mapping], path: str | Path, labels=None) -> Path:
    """Error against noise level, one panel per sweep, one line per model."""
    labels = list(labels or _labels(results))
    sweeps = _union(r.get("noise_sweeps") or {} for r in results)
    figure = new_figure(4.2 * len(sweeps), 3.6)
    for number, sweep in enumerate(sweeps):
        axes = figure.add_subplot(1, len(sweeps), number + 1)
        parameter = "level"
        for index, (label, r) in enumerate(zip(labels, results, strict=True)):
            curve = (r.get("noise_sweeps") or {}).get(sweep)
            if curve:
                parameter = curve["parameter"]
                axes.plot(curve["levels"], 100 * np.asarray(curve["errors"]), marker="o",
                          color=f"C{index}", label=label)  # fmt: skip
        axes.set_xlabel(parameter)
        axes.set_ylabel("error (%)")
        axes.set_title(f"{sweep.replace('_', ' + ')} noise")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    return save_figure(figure, path)


def _pushpull_like(module: nn.Module) -> bool:
    # duck-typed so that any push-pull layer with a `push` convolution counts, ours or a port
    return isinstance(getattr(module, "push", None), nn.Conv2d)


def _convolutions(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Convolutions and push-pull layers in definition order (a push-pull layer's own push conv
    is part of it, not a layer of its own)."""
    layers, pushpull = [], set()
    for name, module in model.named_modules():
        if _pushpull_like(module):
            pushpull.add(f"{name}.push")
            layers.append((name, module))
        elif isinstance(module, nn.Conv2d) and name not in pushpull:
            layers.append((name, module))
    return layers


def first_layer(model: nn.Module) -> nn.Module:
    """The first convolution (or push-pull layer) of a model."""
    layers = _convolutions(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no convolution to show")
    return layers[0][1]


def first_block_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights of the first layer and of the convolutions of the first stage in timm's
    ``feature_info`` that has any (e.g. ``layer1`` of a ResNet); the first layer only without it."""
    layers = _convolutions(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no convolution")
    block = layers[:1]
    for info in getattr(model, "feature_info", None) or []:
        prefix = f"{info.get('module', '')}."
        stage = [(n, m) for n, m in layers[1:] if n.startswith(prefix)]
        if stage:
            block += stage
            break
    return {name: module.weight.detach().float().cpu() for name, module in block}


def hoyer_sparsity(weights: torch.Tensor) -> float:
    """Hoyer (2004) sparsity: 0 when all magnitudes are equal, 1 when one weight holds everything."""
    flat = weights.detach().flatten().double()
    count = flat.numel()
    l2 = flat.norm()
    if count < 2 or l2 == 0:
        return 0.0
    return float((math.sqrt(count) - flat.abs().sum() / l2) / (math.sqrt(count) - 1))


def plot_weight_histograms(models: Mapping[str, nn.Module], path: str | Path) -> Path:
    """Histogram of the first-block weights of each model, Hoyer sparsity in the legend."""
    figure = new_figure(6.0, 4.0)
    axes = figure.add_subplot()
    for number, (label, model) in enumerate(models.items()):
        weights = torch.cat([w.flatten() for w in first_block_weights(model).values()]).numpy()
        bins = int(np.clip(np.sqrt(weights.size), 10, 80))  # a LeNet stem has only 150 weights
        axes.hist(weights, bins=bins, density=True, histtype="step", linewidth=1.5, color=f"C{number}",
                  label=f"{label} (Hoyer sparsity {hoyer_sparsity(torch.from_numpy(weights)):.2f})")  # fmt: skip
    axes.set_xlabel("weight")
    axes.set_ylabel("density")
    axes.set_title("First-block weights")
    axes.legend(fontsize="small")
    return save_figure(figure, path)


@torch.no_grad()
def _first_layer_response(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    captured = []
    handle = first_layer(model).register_forward_hook(
        lambda _m, _i, output: captured.append(output)
    )
    try:
        model(images)
    finally:
        handle.remove()
    return captured[0].float().cpu()


def plot_response_maps(
    models: Mapping[str, nn.Module],
    image: torch.Tensor,
    path: str | Path,
    normalization: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    noise_variance: float = 0.02,
    channels: int = 6,
    seed: int = 0,
) -> Path:
    """First-layer responses of each model to ``image`` ([C, H, W] in [0, 1]) and a noisy copy.

    Rows: per model, clean then Gaussian noise of ``noise_variance``. Columns: the input, then the
    ``channels`` maps with the largest response variance on the clean image (shared colour scale
    per channel, so clean and noisy compare directly).
    """
    from .corruptions.noise import add_gaussian_noise

    generator = torch.Generator().manual_seed(seed)
    noisy = add_gaussian_noise(
        image[None], noise_variance, torch.randn(image[None].shape, generator=generator)
    )
    inputs = torch.cat([image[None], noisy])
    figure = new_figure(1.6 * (channels + 1), 1.7 * 2 * len(models))
    grid = figure.subplots(2 * len(models), channels + 1, squeeze=False)
    for number, (label, model) in enumerate(models.items()):
        model = model.eval()
        device = next(model.parameters()).device
        mean, std = (normalization or {}).get(label, (None, None))
        if mean is None:
            from timm.data import resolve_data_config

            config = resolve_data_config({}, model=model)
            mean, std = config["mean"], config["std"]
        if len(mean) not in (1, image.shape[0]):
            raise ValueError(
                f"{label}: normalisation has {len(mean)} channels, the image {image.shape[0]}; "
                "pass normalization={label: (mean, std)}"
            )
        mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        responses = _first_layer_response(model, ((inputs - mean) / std).to(device))
        order = responses[0].flatten(1).var(dim=1).argsort(descending=True)[:channels]
        for row, (kind, picture) in enumerate(zip(("clean", "noisy"), inputs, strict=True)):
            axes_row = grid[2 * number + row]
            shown = picture.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy()
            axes_row[0].imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
            axes_row[0].set_title(f"{label}\n{kind}", fontsize=7)
            for column, channel in enumerate(order.tolist(), start=1):
                maps = responses[:, channel]
                limit = float(maps.abs().max()) or 1.0
                axes_row[column].imshow(
                    responses[row, channel].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit
                )
                axes_row[column].set_title(f"channel {channel}", fontsize=7)
            for axes in axes_row:
                axes.set_axis_off()
        for column in range(len(order) + 1, channels + 1):
            grid[2 * number, column].set_axis_off()
            grid[2 * number + 1, column].set_axis_off()
    figure.suptitle(
        f"First-layer responses: clean vs Gaussian noise (variance {noise_variance:g})", fontsize=9
    )
    return save_figure(figure, path)


def save_figure(figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG at the reports' resolution (its folder made as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def write_report(
    results: Sequence[Mapping],
    out_dir: str | Path,
    models: Mapping[str, nn.Module] | None = None,
    sample_images: torch.Tensor | None = None,
    normalization: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    labels: Sequence[str] | None = None,
) -> list[Path]:
    """``report.md`` and the PNG plots the results (and models, when given) allow; returns the paths.

    ``models`` maps a label to a model for the weight histogram and, with ``sample_images``
    ([N, C, H, W] in [0, 1]; the first is used), the response maps. ``normalization`` maps a model
    label to its (mean, std), default: the model's timm data config.
    """
    if not results:
        raise ValueError("no results to report")
    out_dir = Path(out_dir)
    labels = list(labels or _labels(results))
    plots: list[tuple[str, Path]] = []
    if any(r.get("corruptions") for r in results):
        plots.append(
            (
                "Error per corruption",
                plot_corruption_errors(results, out_dir / "corruption_errors.png", labels),
            )
        )
    if any(r.get("corruptions") and r.get("perturbations") for r in results):
        plots.append(
            (
                "Corruption error vs. flip probability",
                plot_ce_vs_flip(results, out_dir / "ce_vs_flip.png", labels),
            )
        )
    if any(r.get("noise_sweeps") for r in results):
        plots.append(
            ("Noise sweeps", plot_noise_sweeps(results, out_dir / "noise_sweeps.png", labels))
        )
    if models:
        plots.append(
            (
                "First-block weights",
                plot_weight_histograms(models, out_dir / "first_block_weights.png"),
            )
        )
        if sample_images is not None:
            path = plot_response_maps(
                models, sample_images[0], out_dir / "response_maps.png", normalization
            )
            plots.append(("First-layer response maps", path))
    first = results[0]
    settings = first.get("settings", {})
    baseline = first.get("baseline")
    lines = [
        "# Robustness report",
        "",
        f"Models: {', '.join(labels)}. Images: {first.get('n_images')}, seed {first.get('seed')}, "
        f"corruption scale {settings.get('scale')}, datasets {settings.get('datasets')}.",
        "Errors and flip probabilities in %; CE, rCE and FR in % of the baseline"
        + (f" ({baseline['name']}: {baseline['source']})." if baseline else " (none given)."),
        *(
            [
                "CE and rCE compare the severities both a run and the baseline have (row 'CE on "
                "severities'); the baseline's column shows its error over its own severities "
                f"{', '.join(str(s) for s in baseline.get('severities', [1, 2, 3, 4, 5]))}."
            ]
            if baseline
            else []
        ),  # fmt: skip
        "",
        format_comparison(results, labels),
        "",
    ]
    if any(not r.get("corruptions", {}).get("frost", {}).get("comparable", True) for r in results):
        lines[-1:-1] = [
            "Frost: generated with procedural (or non-reference) textures, not the reference "
            "photos: the frost column (and mCE) is not comparable with published numbers.",
            "",
        ]
    for title, path in plots:
        lines += [f"## {title}", "", f"![{title}]({path.name})", ""]
    report = out_dir / REPORT_FILE
    report.write_text("\n".join(lines))
    return [report] + [path for _, path in plots]
