"""Robustness metrics: corruption error (CE/mCE), relative CE, flip probability (mFR), shift consistency.

All functions are pure: they take error rates or predicted labels and return numbers, so the same
formulas serve a fresh evaluation, a results file or the authors' published text results.
Error rates are fractions in [0, 1]; CE, rCE and FR are ratios (1.0 = as good as the baseline).

References:
- Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
  Perturbations", ICLR 2019 (CE, relative CE, mCE, flip probability, mFR).
- Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019 (shift consistency).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "error_rate",
    "corruption_error",
    "relative_corruption_error",
    "mean_corruption_error",
    "summarize_corruptions",
    "flip_probability",
    "flip_rates",
    "shift_consistency",
]


def _as_array(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    return array


def error_rate(predictions: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Top-1 error: the fraction of ``predictions`` (class indices) that differ from ``labels``."""
    predictions, labels = np.asarray(_to_numpy(predictions)), np.asarray(_to_numpy(labels))
    if predictions.shape != labels.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and labels {tuple(labels.shape)} differ in shape"
        )
    if predictions.size == 0:
        raise ValueError("no predictions to score")
    return float(np.mean(predictions != labels))


def corruption_error(errors: Sequence[float], baseline_errors: Sequence[float] | float) -> float:
    """CE_c = sum_s E_cs / sum_s E_cs(baseline) (Hendrycks & Dietterich 2019, eq. 1).

    ``baseline_errors`` is either the baseline's errors per severity (same severities as
    ``errors``) or one number, the baseline's error averaged over those severities (how the
    push-pull paper publishes its AlexNet table); both give the same ratio.
    """
    model = _as_array(errors, "errors")
    baseline = _baseline_mean(baseline_errors, len(model))
    if baseline <= 0:
        raise ValueError(f"baseline error must be > 0 to normalise by it, got {baseline}")
    return float(model.mean() / baseline)


def relative_corruption_error(
    errors: Sequence[float],
    clean_error: float,
    baseline_errors: Sequence[float] | float,
    baseline_clean_error: float,
) -> float:
    """rCE_c = sum_s (E_cs - E) / sum_s (E_cs(baseline) - E(baseline)) (Hendrycks & Dietterich 2019).

    It measures the degradation caused by the corruption relative to the baseline's
    degradation, independently of how good the clean accuracy is.
    """
    model = _as_array(errors, "errors")
    baseline = _baseline_mean(baseline_errors, len(model))
    baseline_drop = baseline - float(baseline_clean_error)
    if baseline_drop <= 0:
        raise ValueError(
            "the baseline's corrupted error must exceed its clean error to normalise by the "
            f"difference, got {baseline} vs clean {baseline_clean_error}"
        )
    return float((model.mean() - float(clean_error)) / baseline_drop)


def mean_corruption_error(values: Mapping[str, float], names: Sequence[str] | None = None) -> float:
    """mCE (or relative mCE, mFR): the plain mean of per-corruption ratios over ``names``.

    ``names`` fixes which corruptions enter the mean (the 15 standard ones for ImageNet-C, all 19 in
    the push-pull paper's CIFAR-10-C table); every one of them must be present in ``values``.
    """
    names = list(values) if names is None else list(names)
    missing = [name for name in names if name not in values]
    if missing:
        raise ValueError(f"the mean needs every corruption in names; missing {missing}")
    return float(np.mean(_as_array([values[name] for name in names], "values")))


def summarize_corruptions(
    errors: Mapping[str, Sequence[float]],
    clean_error: float | None,
    baseline_errors: Mapping[str, Sequence[float] | float],
    baseline_clean_error: float | None,
    mce_names: Sequence[str] | None = None,
) -> dict:
    """CE and rCE per corruption, mCE and relative mCE against one baseline.

    Corruptions the baseline does not know, or where its error is 0, get no CE; where its
    corrupted error does not exceed its clean error, no rCE (both ratios would be undefined). The
    means run over the corruptions of ``mce_names`` (default: all the baseline knows) that have a
    ratio; ``mce_corruptions`` (``relative_mce_corruptions``) lists those with a CE (rCE) and
    ``mce_complete`` (``relative_mce_complete``) says whether all of ``mce_names`` were there,
    i.e. whether the mean is comparable with published ones. rCE needs both clean errors.
    """
    baseline_means = {
        name: _baseline_mean(baseline_errors[name], len(_as_array(errs, "errors")))
        for name, errs in errors.items()
        if name in baseline_errors
    }
    ce = {
        name: corruption_error(errors[name], baseline_errors[name])
        for name, mean in baseline_means.items()
        if mean > 0
    }
    rce = {}
    if clean_error is not None and baseline_clean_error is not None:
        rce = {
            name: relative_corruption_error(
                errors[name], clean_error, baseline_errors[name], baseline_clean_error
            )
            for name, mean in baseline_means.items()
            if mean > baseline_clean_error
        }
    wanted = list(baseline_errors) if mce_names is None else list(mce_names)
    names = [name for name in wanted if name in ce]
    relative_names = [name for name in wanted if name in rce]
    return {
        "ce": ce,
        "rce": rce,
        "mce": mean_corruption_error(ce, names) if names else None,
        "relative_mce": mean_corruption_error(rce, relative_names) if relative_names else None,
        "mce_corruptions": names,
        "mce_complete": bool(names) and len(names) == len(wanted),
        "relative_mce_corruptions": relative_names,
        "relative_mce_complete": bool(relative_names) and len(relative_names) == len(wanted),
    }


def flip_probability(predictions: torch.Tensor | np.ndarray, noise: bool) -> float:
    """Flip probability of top-1 predictions over perturbation sequences (Hendrycks & Dietterich 2019).

    ``predictions`` has shape [N, T] (N sequences of T frames). Noise sequences are independent
    draws around one clean image, so every frame is compared with the first; the other sequences
    are gradual changes, so consecutive frames are compared (the CIFAR-10-P convention,
    ``noise = "noise" in perturbation_name`` in Hendrycks' evaluation script).
    """
    predictions = np.asarray(_to_numpy(predictions))
    if predictions.ndim != 2 or predictions.shape[1] < 2:
        raise ValueError(
            f"predictions must have shape [sequences, frames >= 2], got {tuple(predictions.shape)}"
        )
    if noise:
        flips = predictions[:, 1:] != predictions[:, :1]
    else:
        flips = predictions[:, 1:] != predictions[:, :-1]
    return float(flips.mean())


def flip_rates(
    flip_probabilities: Mapping[str, float], baseline_flip_probabilities: Mapping[str, float]
) -> dict[str, float]:
    """FR_p = FP_p / FP_p(baseline) for every perturbation the baseline knows with FP > 0
    (a baseline that never flips gives no ratio); mFR is their mean."""
    return {
        name: float(value) / float(baseline_flip_probabilities[name])
        for name, value in flip_probabilities.items()
        if float(baseline_flip_probabilities.get(name, 0.0)) > 0
    }


def shift_consistency(
    predictions_a: torch.Tensor | np.ndarray, predictions_b: torch.Tensor | np.ndarray
) -> float:
    """Zhang (2019) consistency: how often the top-1 class agrees for two shifts of the same image."""
    predictions_a, predictions_b = _to_numpy(predictions_a), _to_numpy(predictions_b)
    return 1.0 - error_rate(predictions_a, predictions_b)


def _baseline_mean(baseline_errors: Sequence[float] | float, num_severities: int) -> float:
    if np.ndim(baseline_errors) == 0:
        return float(_as_array([baseline_errors], "baseline_errors")[0])
    baseline = _as_array(baseline_errors, "baseline_errors")
    if len(baseline) != num_severities:
        raise ValueError(
            f"baseline_errors has {len(baseline)} severities but errors has {num_severities}; "
            "give the same severities or the baseline's average as one number"
        )
    return float(baseline.mean())


def _to_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)
