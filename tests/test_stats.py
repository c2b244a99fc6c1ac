"""Paired comparisons of two models on the same images, against hand-computed values."""

import math

import numpy as np
import pytest
from scipy.stats import beta

from timm_pushpull.robustness.stats import (
    NO_CLEAR_DIFFERENCE,
    mcnemar_exact,
    paired_bootstrap,
)


def test_mcnemar_counts_only_discordant_images():
    # 15 images: 1 only the candidate gets wrong, 9 only the reference, 5 both right
    candidate = [1] + [0] * 9 + [0] * 5
    reference = [0] + [1] * 9 + [0] * 5
    result = mcnemar_exact(candidate, reference)
    # two-sided exact binomial test of 1 out of 10 at 1/2: 2 * (C(10,0) + C(10,1)) / 2^10
    assert result.p_value == pytest.approx(2 * (1 + 10) / 1024)
    assert result.effect == pytest.approx((1 - 9) / 15)
    assert (result.candidate, result.reference) == (pytest.approx(1 / 15), pytest.approx(9 / 15))
    # Clopper-Pearson bounds of 1/10: lower solves 1 - (1 - p)^10 = 0.025, upper is the Beta(2, 9)
    # 0.975 quantile; mapped to the difference of error rates: 10/15 * (2 p - 1)
    lower = 1 - 0.975**0.1
    upper = beta.ppf(0.975, 2, 9)
    assert result.low == pytest.approx(10 / 15 * (2 * lower - 1))
    assert result.high == pytest.approx(10 / 15 * (2 * upper - 1))
    assert result.verdict() == "better"  # the interval is below 0: the candidate errs less
    # images both models get right or both get wrong change nothing but n
    more = mcnemar_exact(candidate + [1] * 10, reference + [1] * 10)
    assert more.p_value == result.p_value and more.effect == pytest.approx(-8 / 25)


def test_mcnemar_without_discordant_images_is_no_difference():
    result = mcnemar_exact([1, 0, 1], [1, 0, 1])
    assert (result.effect, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert result.verdict() == NO_CLEAR_DIFFERENCE
    # 3 against 0: p = 2 / 8, the interval covers 0
    assert mcnemar_exact([1, 1, 1], [0, 0, 0]).verdict() == NO_CLEAR_DIFFERENCE
    with pytest.raises(ValueError, match="same images"):
        mcnemar_exact([1, 0], [1, 0, 1])


def test_paired_bootstrap_matches_the_normal_interval_on_many_images():
    rng = np.random.default_rng(1)
    differences = rng.normal(0.1, 1.0, 4000)
    result = paired_bootstrap(differences, np.zeros(4000))
    se = differences.std(ddof=1) / math.sqrt(4000)  # the t interval is the large-n reference
    assert result.effect == pytest.approx(differences.mean())
    assert result.low == pytest.approx(differences.mean() - 1.96 * se, abs=0.2 * se)
    assert result.high == pytest.approx(differences.mean() + 1.96 * se, abs=0.2 * se)
    assert result.verdict() == "worse" and result.verdict(higher_is_better=True) == "better"
    assert paired_bootstrap(differences, np.zeros(4000)) == result  # seeded: repeatable


def test_severities_of_the_same_images_are_not_independent_samples():
    # 100 images, 5 severities: the reference is wrong on images 0-29 at every severity, the
    # candidate on images 30-49. 0.2 vs 0.3 error: counted as 500 independent predictions the gap
    # is 3.7 binomial standard errors, but only 50 images differ, 30 one way and 20 the other
    reference = np.zeros((5, 100))
    reference[:, :30] = 1
    candidate = np.zeros((5, 100))
    candidate[:, 30:50] = 1
    naive_se = math.sqrt((0.2 * 0.8 + 0.3 * 0.7) / 500)
    assert 0.1 / naive_se > 3.5
    result = paired_bootstrap(candidate, reference)
    assert result.effect == pytest.approx(-0.1) and result.n_images == 100
    # the per-image differences are -1 (30 images), +1 (20), 0 (50): the SE of their mean
    se = np.r_[-np.ones(30), np.ones(20), np.zeros(50)].std(ddof=1) / 10
    assert result.low == pytest.approx(-0.1 - 1.96 * se, abs=0.03)
    assert result.low < 0 < result.high and result.verdict() == NO_CLEAR_DIFFERENCE


def test_pairing_finds_a_consistent_difference_that_unpaired_errors_hide():
    # the candidate is wrong on the reference's 60 images plus 12 more: 24% vs 20% is within two
    # unpaired binomial standard errors of 300 images, but no image favours the candidate
    reference = np.zeros(300)
    reference[:60] = 1
    candidate = reference.copy()
    candidate[60:72] = 1
    assert 0.04 < 2 * math.sqrt((0.24 * 0.76 + 0.2 * 0.8) / 300)
    result = paired_bootstrap(candidate, reference)
    assert result.low > 0 and result.verdict() == "worse"
    assert mcnemar_exact(candidate, reference).p_value == pytest.approx(2 / 2**12)


def test_identical_differences_and_bad_shapes():
    result = paired_bootstrap(np.ones((3, 4)), np.zeros((3, 4)))
    assert (result.effect, result.low, result.high) == (1.0, 1.0, 1.0)
    assert paired_bootstrap([0, 1], [0, 1]).verdict() == NO_CLEAR_DIFFERENCE
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"\[levels, n_images\]"):
        paired_bootstrap(np.ones((2, 3, 4)), np.ones((2, 3, 4)))
