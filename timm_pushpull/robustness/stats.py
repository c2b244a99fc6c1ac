"""Paired comparison of two models tested on the same images.

Every severity of a corruption, and every level of a noise sweep, reuses the same test images, so
they are not independent samples: treating ``n_images * n_severities`` predictions as independent
makes the standard errors too small. Here the image is the unit. A model's outcome on one image
is averaged over the severities (levels) first; the effect is the mean over images of the paired
difference ``candidate - reference``, with a 95% bootstrap interval that resamples images (scipy's
BCa bootstrap; Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993). Clean error, one
right/wrong outcome per image, gets McNemar's exact test (McNemar, Psychometrika 1947) and the exact
conditional interval that matches it: Clopper-Pearson on the share of discordant images that the
candidate gets wrong.

A difference is called only when its interval excludes 0; otherwise: "no clear difference".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["PairedComparison", "paired_bootstrap", "mcnemar_exact", "NO_CLEAR_DIFFERENCE"]

CONFIDENCE = 0.95
NO_CLEAR_DIFFERENCE = "no clear difference"


@dataclass(frozen=True)
class PairedComparison:
    """``candidate - reference`` on the same images: the mean difference and its 95% interval."""

    candidate: float  # the candidate's mean over images (an error rate, or a consistency)
    reference: float
    effect: float  # candidate - reference
    low: float
    high: float
    n_images: int
    method: str  # "paired bootstrap over images" or "McNemar exact"
    p_value: float | None = None  # McNemar's, for clean error

    def verdict(self, higher_is_better: bool = False) -> str:
        """``"better"`` / ``"worse"`` for the candidate when the interval excludes 0, else
        :data:`NO_CLEAR_DIFFERENCE`."""
        if self.low <= 0.0 <= self.high:
            return NO_CLEAR_DIFFERENCE
        return "better" if (self.effect > 0) == higher_is_better else "worse"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _per_image(outcomes: np.ndarray | list, name: str) -> np.ndarray:
    """``[n_images]`` or ``[levels, n_images]`` outcomes -> the per-image mean over levels."""
    values = np.asarray(outcomes, dtype=np.float64)
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"{name} must be [n_images] or [levels, n_images], got {values.shape}")
    return values.mean(axis=0)


def paired_bootstrap(
    candidate: np.ndarray | list,
    reference: np.ndarray | list,
    resamples: int = 9999,
    seed: int = 0,
) -> PairedComparison:
    """Mean paired difference over images and its 95% BCa bootstrap interval (images resampled).

    Args:
        candidate, reference: per-image outcomes of the two models on the same images, ``[n]`` or
            ``[levels, n]`` (e.g. 1 = wrong at each severity); levels are averaged per image.
        resamples: bootstrap resamples; ``seed`` makes the interval repeatable.
    """
    a, b = _per_image(candidate, "candidate"), _per_image(reference, "reference")
    if a.shape != b.shape:
        raise ValueError(
            f"candidate and reference must hold the same images, got {a.size} and {b.size}"
        )
    difference = a - b
    effect = float(difference.mean())
    if np.ptp(difference) == 0:  # every image differs by the same amount: no spread to resample
        low = high = effect
    else:
        result = stats.bootstrap(
            (difference,),
            np.mean,
            confidence_level=CONFIDENCE,
            n_resamples=resamples,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
        low, high = (float(v) for v in result.confidence_interval)
    return PairedComparison(
        candidate=float(a.mean()),
        reference=float(b.mean()),
        effect=effect,
        low=low,
        high=high,
        n_images=int(a.size),
        method="paired bootstrap over images",
    )


def mcnemar_exact(
    candidate_wrong: np.ndarray | list, reference_wrong: np.ndarray | list
) -> PairedComparison:
    """Clean error of two models on the same images: McNemar's exact test and interval.

    Only the discordant images count: ``b`` that only the candidate gets wrong, ``c`` that only the
    reference gets wrong. The effect is ``(b - c) / n``; the p-value is the two-sided binomial test
    of ``b`` out of ``b + c`` at 1/2; the interval maps the Clopper-Pearson interval ``[lo, hi]``
    of ``b / (b + c)`` to ``(b + c) / n * (2 [lo, hi] - 1)``.
    """
    a = np.asarray(candidate_wrong, dtype=bool)
    r = np.asarray(reference_wrong, dtype=bool)
    if a.ndim != 1 or a.shape != r.shape or a.size == 0:
        raise ValueError(
            f"candidate_wrong and reference_wrong must be 1-d over the same images, got {a.shape} "
            f"and {r.shape}"
        )
    n = a.size
    b, c = int((a & ~r).sum()), int((~a & r).sum())
    effect = (b - c) / n
    if b + c == 0:
        low = high = 0.0
        p_value = 1.0
    else:
        test = stats.binomtest(b, b + c, 0.5)
        interval = test.proportion_ci(confidence_level=CONFIDENCE, method="exact")
        scale = (b + c) / n
        low, high = scale * (2 * interval.low - 1), scale * (2 * interval.high - 1)
        p_value = float(test.pvalue)
    return PairedComparison(
        candidate=float(a.mean()),
        reference=float(r.mean()),
        effect=effect,
        low=float(low),
        high=float(high),
        n_images=n,
        method="McNemar exact",
        p_value=p_value,
    )
