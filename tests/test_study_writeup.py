"""The study's write-up (docs/study/README.md) and the README's evidence section quote numbers
that follow from the committed raw files (docs/study/results): re-derived here with numpy and
scipy alone from each cell's per_image.npz, not through the study's code, so the text cannot
drift from the data."""

import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from timm_pushpull.study.grid import GROUPS
from timm_pushpull.study.papers import PAPER_CIFAR10C_RESNET20, PAPER_MNIST

ROOT = Path(__file__).resolve().parents[1]
CELLS = ROOT / "docs" / "study" / "results" / "cells"
# line breaks and indents are layout: phrases are matched in the texts with runs of white space as
# one space
WRITEUP = " ".join((ROOT / "docs" / "study" / "README.md").read_text().split())
_readme = (ROOT / "README.md").read_text()
EVIDENCE = " ".join(
    _readme[_readme.index("**What the evidence says**") : _readme.index("## Install")].split()
)
SHIFT, MEAN_CE = "shift", "mean corruption error"
SWEEPS = ("noise_sweeps/gaussian", "noise_sweeps/speckle", "noise_sweeps/contrast_poisson")
INTERVAL = re.compile(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]")


def folder(group: str, label: str, seed: int) -> Path:
    return CELLS / group / f"{label.replace(' ', '_')}-s{seed}"


@cache
def outcomes(group: str, label: str, seed: int) -> dict[str, np.ndarray]:
    """unit -> [levels, images] float outcomes (1 = wrong; shift: 1 = the two shifts agree)."""
    with np.load(folder(group, label, seed) / "per_image.npz") as data:
        return {
            key: np.atleast_2d(data[key]).astype(np.float64)
            for key in data.files
            if key != "run" and not key.endswith("/indices")
        }


def seeds(group: str, label: str) -> list[int]:
    return [s for s in range(5) if (folder(group, label, s) / "results.json").is_file()]


def values_of(units: dict[str, np.ndarray], test: str) -> np.ndarray:
    if test == MEAN_CE:  # saturate hands a grey image back unchanged: left out
        return np.concatenate(
            [
                v
                for k, v in units.items()
                if k.startswith("corruptions/") and k != "corruptions/saturate"
            ]
        )
    return units[test]


def t_interval(values, clip=False) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:  # no interval from one seed
        return values.mean(), np.nan, np.nan
    half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    low, high = values.mean() - half, values.mean() + half
    return values.mean(), max(low, 0.0) if clip else low, min(high, 100.0) if clip else high


@cache
def difference(group, candidate, reference, test, reference_group=None, levels=None):
    """(mean, low, high, p) over seeds of candidate - reference in % points."""
    reference_group = reference_group or group
    common = [s for s in seeds(group, candidate) if s in seeds(reference_group, reference)]
    per_seed = []
    for s in common:
        a = values_of(outcomes(group, candidate, s), test)
        b = values_of(outcomes(reference_group, reference, s), test)
        if levels is not None:
            a, b = a[list(levels)], b[list(levels)]
        per_seed.append(100 * (a.mean() - b.mean()))
    return (*t_interval(per_seed), float(stats.ttest_1samp(per_seed, 0.0).pvalue))


def accuracy(group, label, test="clean_error", level=None) -> tuple[float, float, float]:
    values = []
    for s in seeds(group, label):
        v = values_of(outcomes(group, label, s), test)
        v = v[level] if level is not None else v
        values.append(100 * v.mean() if test == SHIFT else 100 * (1 - v.mean()))
    return t_interval(values, clip=True)


def fmt(d) -> str:
    return f"{d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}]"


def reference_group(group: str, reference: str) -> str:
    return group if any(reference == label for label, _, _ in GROUPS[group].cells) else "lenet"


@cache
def pair_tests(group, candidate, reference) -> dict[str, tuple]:
    """Every test of a pair: (mean, low, high, p, Holm-adjusted p over the pair's tests)."""
    ref = reference_group(group, reference)
    units = outcomes(group, candidate, 0)
    names = ["clean_error"] + [k for k in units if k.startswith(("noise_sweeps/", "corruptions/"))]
    names += [SHIFT] if SHIFT in units else []
    names += [MEAN_CE] if any(k.startswith("corruptions/") for k in units) else []
    found = {name: difference(group, candidate, reference, name, ref) for name in names}
    p = np.array([d[3] for d in found.values()])
    order, adjusted, running = np.argsort(p, kind="stable"), np.empty_like(p), 0.0
    for rank, index in enumerate(order):  # Holm's step-down method, written out
        running = max(running, min(1.0, (p.size - rank) * p[index]))
        adjusted[index] = running
    return {name: (*d, a) for (name, d), a in zip(found.items(), adjusted, strict=True)}


def clear(d) -> bool:
    return not d[1] <= 0 <= d[2]


def holm(d) -> bool:
    return d[4] < 0.05


def all_pairs():
    for group, spec in GROUPS.items():
        for candidate, reference in spec.pairs:
            if len(seeds(group, candidate)) >= 2:  # one seed has no interval over seeds
                yield group, candidate, reference


def test_every_interval_quoted_is_a_seed_difference_of_the_data():
    derived = set()
    for group, candidate, reference in all_pairs():
        derived |= {fmt(d) for d in pair_tests(group, candidate, reference).values()}
    for base in "ABD":  # the paper's levels where both of its values are transcribed
        for sweep in ("gaussian", "contrast_poisson"):
            rows = PAPER_MNIST[sweep]
            if base in rows:
                both = tuple(i for i, (a, b) in enumerate(zip(rows[base], rows[f"P{base}"]))
                             if a is not None and b is not None)  # fmt: skip
                derived.add(fmt(difference("lenet", f"P{base}", base, f"noise_sweeps/{sweep}",
                                           levels=both)))  # fmt: skip
    quoted = INTERVAL.findall(WRITEUP) + INTERVAL.findall(EVIDENCE)
    assert len(quoted) > 80
    assert sorted(set(quoted) - derived) == []


def test_lenet_table():
    for base in "ABCD":
        tests = pair_tests("lenet", f"P{base}", base)
        cells = [fmt(tests[t]) for t in ("clean_error", *SWEEPS)]
        assert f"| P{base} vs {base} | " + " | ".join(cells) + " |" in WRITEUP
        assert not any(
            clear(tests[t]) for t in ("clean_error", *SWEEPS)
        )  # "no difference is clear"
        assert abs(tests["clean_error"][0]) < 0.5  # "within half a point"
    gaussian = [pair_tests("lenet", f"P{b}", b)["noise_sweeps/gaussian"][0] for b in "ABCD"]
    poisson = [pair_tests("lenet", f"P{b}", b)["noise_sweeps/contrast_poisson"][0] for b in "ABCD"]
    assert (
        all(g < 0 for g in gaussian) and f"{-max(gaussian):.2f}-{-min(gaussian):.2f}" == "0.22-2.75"
    )
    assert [p < 0 for p in poisson] == [True, True, True, False]  # "3 of 4 (PD: more)"
    for base in "ABCD":  # "in every pair the 5 seeds' differences have both signs"
        signs = {np.sign(values_of(outcomes("lenet", f"P{base}", s), SWEEPS[2]).mean()
                         - values_of(outcomes("lenet", base, s), SWEEPS[2]).mean()) for s in range(5)}  # fmt: skip
        assert signs == {-1.0, 1.0}, base
    assert "in 4 of 4 pairs" in EVIDENCE and "in 3 of 4" in EVIDENCE
    clean = [accuracy("lenet", label)[0] for label in "A B C D PA PB PC PD".split()]
    assert f"{min(clean):.1f}-{max(clean):.1f}%" in WRITEUP
    a = accuracy("lenet", "A", "noise_sweeps/contrast_poisson", level=1)  # C = 0.5
    assert f"{a[0]:.2f}% [{a[1]:.2f}, {a[2]:.2f}]" in WRITEUP


def test_the_papers_mnist_numbers_quoted():
    gains = [PAPER_MNIST["gaussian"][f"P{b}"][i] - PAPER_MNIST["gaussian"][b][i]
             for b in "ABD" for i in range(3, 8)]  # fmt: skip
    quoted = f"+{min(gains):.2f} to +{max(gains):.2f} points"
    assert quoted == "+0.59 to +17.88 points" and quoted in WRITEUP and quoted in EVIDENCE
    for base, mean in (("A", "+22.34"), ("D", "+25.76")):
        rows = PAPER_MNIST["contrast_poisson"]
        assert f"{np.mean(np.subtract(rows['P' + base], rows[base])):+.2f}" == mean
        assert mean in WRITEUP and mean in EVIDENCE
    per_level = [p - b for base in "AD"
                 for p, b in zip(PAPER_MNIST["contrast_poisson"]["P" + base],
                                 PAPER_MNIST["contrast_poisson"][base])]  # fmt: skip
    assert f"+{min(per_level):.2f} to +{max(per_level):.2f}" in WRITEUP
    for base, expected in (("A", "+0.76"), ("B", "+11.60"), ("D", "+3.24")):
        rows = PAPER_MNIST["gaussian"]
        both = [
            p - b for p, b in zip(rows["P" + base], rows[base]) if p is not None and b is not None
        ]
        assert f"{np.mean(both):+.2f}" == expected and f"paper {expected}" in WRITEUP


def test_resnet_table_and_profile():
    rows = {
        ("R20-pp", "R20"), ("R20-pp_b1", "R20"), ("R20-pp_b1", "R20-pp"),
        ("R20+aa", "R20"), ("R20-pp+aa", "R20-pp"), ("R20-pp+aa", "R20"),
    }  # fmt: skip
    for candidate, reference in rows:
        tests = pair_tests("resnet", candidate, reference)
        cells = [fmt(tests[t]) for t in ("clean_error", MEAN_CE, SHIFT)]
        assert f"| {candidate} vs {reference} | " + " | ".join(cells) + " |" in WRITEUP
    pp = pair_tests("resnet", "R20-pp", "R20")
    assert clear(pp[MEAN_CE]) and not holm(pp[MEAN_CE]) and clear(pp[SHIFT]) and not holm(pp[SHIFT])
    assert (
        f"by {-pp[MEAN_CE][0]:.2f} points [{pp[MEAN_CE][1]:+.2f}, {pp[MEAN_CE][2]:+.2f}]"
        in EVIDENCE
    )
    # the clear per-corruption gains are exactly the four where the paper's push-pull is worse
    gains = {k.split("/")[1] for k, d in pp.items() if k.startswith("corruptions/") and clear(d)}
    assert gains == {"snow", "fog", "brightness", "contrast"}
    assert all(PAPER_CIFAR10C_RESNET20[c][1] > PAPER_CIFAR10C_RESNET20[c][0] for c in gains)
    paper_gain = sorted(
        PAPER_CIFAR10C_RESNET20, key=lambda c: np.subtract(*PAPER_CIFAR10C_RESNET20[c][::-1])
    )
    assert set(paper_gain[:4]) == {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"}
    assert not any(clear(pp[f"corruptions/{c}"]) for c in paper_gain[:4])
    for c in ("snow", "fog", "brightness", "contrast", *paper_gain[:4]):
        assert fmt(pp[f"corruptions/{c}"]).split(" [")[0] in WRITEUP
        base, pushpull = PAPER_CIFAR10C_RESNET20[c]
        assert f"{base:.2f} -> {pushpull:.2f}" in WRITEUP
    baseline = {c: np.mean([100 * outcomes("resnet", "R20", s)[f"corruptions/{c}"].mean()
                            for s in range(3)]) for c in ("fog", "contrast", "brightness", "frost")}  # fmt: skip
    for c, error in baseline.items():
        assert error >= 75 and f"{error:.1f}% of the {c}" in WRITEUP
    # anti-aliasing's one Holm survivor; nothing of push-pull survives Holm in any ResNet pair
    for candidate, reference in rows:
        survivors = {k for k, d in pair_tests("resnet", candidate, reference).items() if holm(d)}
        expected = (
            {"corruptions/speckle_noise"} if (candidate, reference) == ("R20+aa", "R20") else set()
        )
        assert survivors == expected, (candidate, reference)
    clean = [accuracy("resnet", label)[0] for label, _, _ in GROUPS["resnet"].cells]
    assert f"Clean accuracy {min(clean):.1f}-{max(clean):.1f}%" in WRITEUP


def test_saturate_is_the_clean_error_on_grey_images_and_cells_are_counted_once():
    import json

    for s in range(3):
        for label, _, _ in GROUPS["resnet"].cells:
            units = outcomes("resnet", label, s)
            assert (units["corruptions/saturate"] == units["clean_error"]).all()
    weights = [json.loads(p.read_text())["identity"]["weights_sha256"]
               for p in CELLS.glob("*/*/results.json") if p.parts[-3] != "resnet_plateau"]  # fmt: skip
    assert (len(weights), len(set(weights))) == (195, 155)
    assert (
        "The 195 cells of the groups other than `resnet_plateau` hold 155 distinct trained models"
        in WRITEUP
    )
    assert "195 cells, 155 distinct trained models" in EVIDENCE
    assert "40 cells retrain, bit for bit" in WRITEUP


def test_variants_claims():
    def t(variant, reference, test):
        return pair_tests("variants", variant, reference)[test]

    g, sp, po, cl = SWEEPS[0], SWEEPS[1], SWEEPS[2], "clean_error"
    holm_survivors = [("PA SimAM", "PA", g), ("PA SimAM", "A", g), ("PA SimAM", "A", po),
                      ("PA SE", "PA", sp), ("PA multi-scale", "A", cl), ("PA unrectified", "PA", cl),
                      ("PA unrectified", "PA", po), ("PA learned-alpha", "PA", cl)]  # fmt: skip
    clear_only = [("PA SE", "PA", g), ("PA SE", "A", sp), ("PA multi-scale", "A", g),
                  ("PA multi-scale", "PA", cl)]  # fmt: skip
    for variant, reference, test in holm_survivors + clear_only:
        d = t(variant, reference, test)
        assert clear(d) and holm(d) == ((variant, reference, test) in holm_survivors)
        assert fmt(d) in WRITEUP
    # the noise gains clear across seeds are those named, no others
    noise_gains = {(v, r, test) for v in ("PA learned-alpha", "PA unrectified", "PA SE", "PA SimAM",
                                          "PA multi-scale") for r in ("PA", "A") for test in SWEEPS
                   if clear(t(v, r, test)) and t(v, r, test)[0] < 0}  # fmt: skip
    assert noise_gains == {("PA SimAM", "PA", g), ("PA SimAM", "A", g), ("PA SimAM", "A", po),
                           ("PA SE", "PA", g), ("PA multi-scale", "A", g)}  # fmt: skip
    assert not any(clear(t("PA learned-alpha", r, test)) for r in ("PA", "A") for test in SWEEPS)


def test_h_alpha_claims():
    def t(h, a, test):
        return pair_tests("h_alpha", f"PA h{h} a{a}", "A cifar-levels")[test]

    for s in range(5):  # h = 1: the same model for every alpha
        first = outcomes("h_alpha", "PA h1 a0.5", s)
        for a in ("1", "1.5"):
            other = outcomes("h_alpha", f"PA h1 a{a}", s)
            assert all(np.array_equal(first[k], other[k]) for k in first)
    assert f"Poisson/contrast {fmt(t('1', '1', SWEEPS[2]))}" in WRITEUP
    assert clear(t("2", "1.5", SWEEPS[2])) and holm(t("2", "1.5", SWEEPS[2]))
    for h, a in (("2", "0.5"), ("2", "1"), ("1.5", "0.5"), ("1.5", "1"), ("1.5", "1.5")):
        assert not clear(t(h, a, SWEEPS[2]))
    for h in ("1", "1.5", "2"):
        for a in ("0.5", "1", "1.5"):
            assert not clear(t(h, a, SWEEPS[0])) and not clear(t(h, a, SWEEPS[1]))


def test_blurpool_table_and_claims():
    shifts, costs = [], []
    for kind in ("rect", "tri", "bin"):
        for size in "2357":
            tests = pair_tests("blurpool", f"A {kind}{size}", "A no-blur")
            assert clear(tests[SHIFT]) and holm(tests[SHIFT])
            shifts.append(tests[SHIFT][0])
            if clear(tests["clean_error"]):
                costs.append(f"{kind}{size}")
                assert holm(tests["clean_error"]) and tests["clean_error"][0] > 0
            assert f"{fmt(tests['clean_error'])} / {fmt(tests[SHIFT])}" in WRITEUP
    assert costs == ["rect5", "rect7", "tri7"]
    assert f"by {min(shifts):.2f}-{max(shifts):.2f} points" in EVIDENCE
    consistency = {label: accuracy("blurpool", label, SHIFT)[0]
                   for label in ("A no-blur", "A rect2", "A rect7", "A tri7", "A bin7")}  # fmt: skip
    seven = sorted(consistency[f"A {k}7"] for k in ("rect", "tri", "bin"))
    assert (f"from {consistency['A no-blur']:.2f}% without blur to {consistency['A rect2']:.2f}% "
            f"with the 2-tap filter and {seven[0]:.2f}-{seven[-1]:.2f}% with 7 taps") in WRITEUP  # fmt: skip


@pytest.mark.parametrize("text", [WRITEUP, EVIDENCE], ids=["write-up", "readme"])
def test_no_stale_claims(text):
    # issue 27: wrong sources, a quote in neither paper, stale ranges and counts
    for stale in ("Tables 2-4 and Fig. 5", "small gains", "0.5-17 points", "17-35 points",
                  "91 cells", "104 cells", "the one clear", "No paper numbers offline"):  # fmt: skip
        assert stale not in text


def image_interval(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """95% percentile bootstrap over images of the mean paired difference (% points), each
    image's outcomes averaged over its levels first: an independent stand-in for the report's
    BCa interval, which it matches to an image or two at 2,000 images."""
    per_image = (candidate - reference).mean(axis=0)
    draws = np.random.default_rng(0).integers(0, per_image.size, (4000, per_image.size))
    means = 100 * per_image[draws].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def test_plateau_claims():
    group, base, pp = "resnet_plateau", "R20 plateau", "R20-pp plateau"
    b1 = "R20-pp_b1 plateau"
    finished = {label: seeds(group, label) for label, _, _ in GROUPS[group].cells}
    aa = "R20+aa plateau"
    assert finished == {base: [0, 1], pp: [0, 1], b1: [0, 1], aa: [0, 1]}  # what the text says
    title = "(seeds 0 and 1 of R20, R20-pp, R20-pp_b1 and R20+aa)"
    assert title in WRITEUP
    ours, theirs = outcomes(group, pp, 0), outcomes(group, base, 0)
    for label in (base, pp):
        assert accuracy(group, label)[0] >= 90
    assert (f"clean accuracy (mean over the finished seeds) {accuracy(group, base)[0]:.2f}% (R20), "
            f"{accuracy(group, pp)[0]:.2f}% (R20-pp), {accuracy(group, b1)[0]:.2f}% "
            f"(R20-pp_b1) and {accuracy(group, aa)[0]:.2f}% (R20+aa)") in WRITEUP  # fmt: skip
    corruption_error = {k.split("/")[1]: 100 * v.mean() for k, v in theirs.items()
                        if k.startswith("corruptions/")}  # fmt: skip
    assert max(corruption_error.values()) < 75  # nothing near chance any more
    top = sorted(corruption_error, key=corruption_error.get, reverse=True)[:3]
    assert "highest errors: " + ", ".join(f"{c} {corruption_error[c]:.1f}%" for c in top) in WRITEUP

    def quoted(test: str, sign: bool = True) -> str:
        d = 100 * (values_of(ours, test).mean() - values_of(theirs, test).mean())
        return f"{d:+.2f}" if sign else f"{abs(d):.2f}"

    def interval(test: str) -> str:
        low, high = image_interval(values_of(ours, test), values_of(theirs, test))
        return f"over images {low:+.2f} to {high:+.2f}"

    for test, phrase in ((MEAN_CE, "points less mean corruption error"),
                         (SHIFT, "points more shift consistency")):  # fmt: skip
        assert f"{quoted(test, sign=False)} {phrase}" in WRITEUP
    # the report's BCa ends, as quoted, within two images' worth (2 x 100 / 2,000 points) of the
    # percentile bootstrap's
    for test in (MEAN_CE, SHIFT, "clean_error"):
        low, high = image_interval(values_of(ours, test), values_of(theirs, test))
        found = re.findall(r"over images ([+-]\d+\.\d\d) to ([+-]\d+\.\d\d)", WRITEUP)
        assert any(abs(float(a) - low) <= 0.1 and abs(float(b) - high) <= 0.1 for a, b in found)
    assert f"clean error {quoted('clean_error', sign=False)} points higher" in WRITEUP
    for corruption in ("gaussian_noise", "impulse_noise", "contrast", "shot_noise",
                       "speckle_noise", "snow", "brightness", "frost"):  # fmt: skip
        assert quoted(f"corruptions/{corruption}") in WRITEUP, corruption
        paper_base, paper_pp = PAPER_CIFAR10C_RESNET20[corruption]
        if corruption in ("snow", "brightness"):  # "where the paper's push-pull is slightly worse"
            assert 0 < paper_pp - paper_base < 1
        elif corruption != "frost":
            assert f"the paper {paper_pp - paper_base:+.2f}" in WRITEUP, corruption
    # Gaussian noise is push-pull's largest gain among the corruptions, and its largest sweep gain
    gains = {c: float(quoted(f"corruptions/{c}")) for c in corruption_error}
    assert min(gains, key=gains.get) == "gaussian_noise"
    sweeps = {s: float(quoted(s)) for s in SWEEPS}
    assert min(sweeps, key=sweeps.get) == "noise_sweeps/gaussian"
    assert f"Gaussian noise ({sweeps['noise_sweeps/gaussian']:+.2f} points" in WRITEUP
    assert f"more error ({sweeps['noise_sweeps/contrast_poisson']:+.2f})" in WRITEUP

    # _pp_b1 against _pp and against the baseline
    first_block = outcomes(group, b1, 0)
    for reference, phrase in ((ours, "points less mean corruption error than R20-pp"),
                              (theirs, "points less mean corruption error (over images")):  # fmt: skip
        d = 100 * (values_of(first_block, MEAN_CE).mean() - values_of(reference, MEAN_CE).mean())
        low, high = image_interval(values_of(first_block, MEAN_CE), values_of(reference, MEAN_CE))
        assert d < 0 and f"{-d:.2f} {phrase}" in WRITEUP
        found = re.findall(r"over images ([+-]\d+\.\d\d) to ([+-]\d+\.\d\d)", WRITEUP)
        assert any(abs(float(a) - low) <= 0.1 and abs(float(b) - high) <= 0.1 for a, b in found)
    shift = 100 * (values_of(first_block, SHIFT).mean() - values_of(ours, SHIFT).mean())
    clean = 100 * (
        values_of(first_block, "clean_error").mean() - values_of(ours, "clean_error").mean()
    )
    assert (
        f"{shift:.2f} points more shift" in WRITEUP
        and f"same clean error ({clean:+.2f})" in WRITEUP
    )
    for corruption in ("shot_noise", "speckle_noise", "contrast"):
        key = f"corruptions/{corruption}"
        d = 100 * (values_of(first_block, key).mean() - values_of(theirs, key).mean())
        assert f"({d:+.2f})" in WRITEUP, corruption


def test_plateau_two_seeds_of_r20_and_r20_pp():
    group, base, pp = "resnet_plateau", "R20 plateau", "R20-pp plateau"
    per_seed = {
        test: [100 * (values_of(outcomes(group, pp, s), test).mean()
                      - values_of(outcomes(group, base, s), test).mean()) for s in (0, 1)]
        for test in (MEAN_CE, "corruptions/gaussian_noise", "corruptions/brightness",
                     "corruptions/contrast")
    }  # fmt: skip
    assert all(d < 0 for d in per_seed[MEAN_CE])  # "less mean corruption error at both"
    first, second = per_seed[MEAN_CE]
    assert f"-{abs(first):.2f} points at seed 0 and -{abs(second):.2f} at seed 1" in WRITEUP
    gaussian = per_seed["corruptions/gaussian_noise"]
    assert f"Gaussian noise {gaussian[0]:+.2f} and {gaussian[1]:+.2f}" in WRITEUP
    brightness, contrast = per_seed["corruptions/brightness"], per_seed["corruptions/contrast"]
    assert (f"(brightness {brightness[0]:+.2f} at seed 0, {brightness[1]:+.2f} at seed 1; contrast "
            f"{contrast[0]:+.2f} and {contrast[1]:+.2f})") in WRITEUP  # fmt: skip
    tests = pair_tests(group, pp, base)
    assert not clear(tests[MEAN_CE]) and f"{fmt(tests[MEAN_CE])} over the" in WRITEUP
    shift = [100 * (values_of(outcomes(group, pp, s), SHIFT).mean()
                    - values_of(outcomes(group, base, s), SHIFT).mean()) for s in (0, 1)]  # fmt: skip
    assert not clear(tests[SHIFT])
    assert f"shift consistency {shift[0]:+.2f} and {shift[1]:+.2f} (not clear)" in WRITEUP
    clear_ones = {name for name, d in tests.items() if clear(d)}
    assert clear_ones == {"corruptions/motion_blur", "corruptions/spatter"}  # "only ... are clear"
    assert not any(holm(tests[name]) for name in clear_ones)  # "neither after Holm's correction"
    assert abs(stats.t.ppf(0.975, 1) - 12.7) < 0.05  # "12.7 standard errors wide"
    # the baseline's seed 1 errs more on these than its seed 0
    errors = [{k.split("/")[1]: 100 * v.mean() for k, v in outcomes(group, base, s).items()
               if k.startswith("corruptions/")} for s in (0, 1)]  # fmt: skip
    top = sorted(errors[1], key=errors[1].get, reverse=True)[:4]
    assert top == ["frost", "contrast", "fog", "brightness"]
    assert all(errors[1][c] > errors[0][c] for c in top)
    quoted = ", ".join(f"{c} ({errors[1][c]:.1f}%)" for c in top[:3])
    assert (
        f"seed 1 errs more on {quoted} and brightness ({errors[1]['brightness']:.1f}%)" in WRITEUP
    )
    assert f"{fmt(tests[MEAN_CE])} over the two (not clear)" in EVIDENCE


def test_plateau_two_seeds_of_r20_pp_b1():
    group, base, pp, b1 = "resnet_plateau", "R20 plateau", "R20-pp plateau", "R20-pp_b1 plateau"

    def per_seed(candidate, reference, test):
        return [100 * (values_of(outcomes(group, candidate, s), test).mean()
                       - values_of(outcomes(group, reference, s), test).mean()) for s in (0, 1)]  # fmt: skip

    less = [-d for d in per_seed(b1, pp, MEAN_CE)]
    assert all(d > 0 for d in less)  # "less mean corruption error" at both seeds
    assert (
        f"{less[0]:.2f} and {less[1]:.2f} points less mean corruption error than R20-pp" in WRITEUP
    )
    shift = per_seed(b1, pp, SHIFT)
    assert f"shift consistency {shift[0]:+.2f} and {shift[1]:+.2f}; of all the tests" in WRITEUP
    against_pp, against_base = pair_tests(group, b1, pp), pair_tests(group, b1, base)
    assert f"R20-pp, {fmt(against_pp[MEAN_CE])};" in WRITEUP
    assert f"Against R20, {fmt(against_base[MEAN_CE])} over the two seeds" in WRITEUP
    assert not clear(against_pp[MEAN_CE]) and not clear(against_base[MEAN_CE])
    assert {n for n, d in against_pp.items() if clear(d)} == {"corruptions/glass_blur"}
    assert {n for n, d in against_base.items() if clear(d)} == {
        "corruptions/contrast", "corruptions/impulse_noise", "corruptions/pixelate",
        "corruptions/spatter",
    }  # fmt: skip
    assert not any(holm(d) for d in (*against_pp.values(), *against_base.values()))


def test_plateau_claims_in_the_readme():
    group, base, pp = "resnet_plateau", "R20 plateau", "R20-pp plateau"
    b1 = "R20-pp_b1 plateau"
    ours, theirs = outcomes(group, pp, 0), outcomes(group, base, 0)
    gain = 100 * (values_of(theirs, MEAN_CE).mean() - values_of(ours, MEAN_CE).mean())
    assert f"points less, push-pull {gain:.2f})" in EVIDENCE
    first_block = outcomes(group, b1, 0)
    b1_gain = 100 * (values_of(ours, MEAN_CE).mean() - values_of(first_block, MEAN_CE).mean())
    assert f"{b1_gain:.2f} points less at seed 0), as in the later paper" in EVIDENCE
    assert "seeds 0 and 1 of each of the four models have finished" in EVIDENCE
    assert seeds(group, base) == seeds(group, pp) == seeds(group, b1) == [0, 1]
    assert seeds(group, "R20+aa plateau") == [0, 1]
    b1_tests = pair_tests(group, b1, pp)
    assert not clear(b1_tests[MEAN_CE]) and b1_tests[MEAN_CE][0] < 0
    assert f"`_pp` at both seeds, {fmt(b1_tests[MEAN_CE])} (not clear" in EVIDENCE


def test_plateau_anti_aliasing_claims():
    group = "resnet_plateau"
    base = outcomes(group, "R20 plateau", 0)
    aa, pp = outcomes(group, "R20+aa plateau", 0), outcomes(group, "R20-pp plateau", 0)

    def diff(model, test):
        return 100 * (values_of(model, test).mean() - values_of(base, test).mean())

    assert -diff(aa, MEAN_CE) > -diff(pp, MEAN_CE)  # "more than R20-pp's"
    assert f"{-diff(aa, MEAN_CE):.2f} points less mean corruption error than R20" in WRITEUP
    assert f"more than R20-pp's {-diff(pp, MEAN_CE):.2f}" in WRITEUP
    assert f"{diff(aa, SHIFT):.2f} points more shift consistency" in WRITEUP
    quoted = re.findall(r"over images ([+-]\d+\.\d\d) to ([+-]\d+\.\d\d)", WRITEUP)
    for test in (MEAN_CE, SHIFT):
        low, high = image_interval(values_of(aa, test), values_of(base, test))
        assert any(abs(float(x) - low) <= 0.1 and abs(float(y) - high) <= 0.1 for x, y in quoted)
    gains = {k.split("/")[1]: diff(aa, k) for k in aa if k.startswith("corruptions/")}
    top = [f"{c} ({gains[c]:+.2f})" for c in sorted(gains, key=gains.get)[:4]]
    assert f"Its largest gains are on {', '.join(top[:3])} and {top[3]}" in WRITEUP
    g = "corruptions/gaussian_noise"
    assert f"R20-pp {diff(pp, g):+.2f} against R20+aa {diff(aa, g):+.2f}" in WRITEUP
    assert diff(pp, g) < diff(aa, g)
    clean = [accuracy(group, label)[0] for label, _, _ in GROUPS[group].cells]
    assert f"{min(clean):.2f}-{max(clean):.2f}% clean accuracy" in EVIDENCE
    assert f"anti-aliasing alone has {-diff(aa, MEAN_CE):.2f} points less" in EVIDENCE


def test_plateau_two_seeds_of_r20_aa():
    group, base, pp, aa = "resnet_plateau", "R20 plateau", "R20-pp plateau", "R20+aa plateau"

    def per_seed(candidate, reference, test):
        return [100 * (values_of(outcomes(group, candidate, s), test).mean()
                       - values_of(outcomes(group, reference, s), test).mean()) for s in (0, 1)]  # fmt: skip

    aa_less, pp_less = (
        [-d for d in per_seed(aa, base, MEAN_CE)],
        [-d for d in per_seed(pp, base, MEAN_CE)],
    )
    assert all(a > p > 0 for a, p in zip(aa_less, pp_less))  # "more than R20-pp at both"
    assert (f"at both seeds, {aa_less[0]:.2f} and {aa_less[1]:.2f} points") in WRITEUP
    assert f"more than R20-pp at both ({pp_less[0]:.2f} and {pp_less[1]:.2f})" in WRITEUP
    against_base = pair_tests(group, aa, base)
    assert not clear(against_base[MEAN_CE])
    assert f"{fmt(against_base[MEAN_CE])} over the two (not clear)" in WRITEUP
    assert f"{fmt(against_base[MEAN_CE])} over the two (not clear)" in EVIDENCE
    less_than_pp = [-d for d in per_seed(aa, pp, MEAN_CE)]
    assert all(d > 0 for d in less_than_pp)
    assert f"at both ({less_than_pp[0]:.2f} and {less_than_pp[1]:.2f} points)" in WRITEUP
    shift = per_seed(aa, base, SHIFT)
    assert f"shift consistency {shift[0]:+.2f} and {shift[1]:+.2f} over the two seeds" in WRITEUP
    # the four largest gains over the two seeds are the baseline's four highest errors at each seed
    gains = {n.split("/")[1]: d[0] for n, d in against_base.items() if n.startswith("corruptions/")}
    top = sorted(gains, key=gains.get)[:4]
    for s in (0, 1):
        errors = {k.split("/")[1]: v.mean() for k, v in outcomes(group, base, s).items()
                  if k.startswith("corruptions/")}  # fmt: skip
        assert set(top) == set(sorted(errors, key=errors.get, reverse=True)[:4])
    assert "(" + ", ".join(f"{c.split('_')[0]} {gains[c]:+.2f}" for c in top) + ")" in WRITEUP
    assert {n for n, d in against_base.items() if clear(d)} == {"corruptions/impulse_noise"}
    assert not holm(against_base["corruptions/impulse_noise"])
    assert (
        f"impulse noise is clear against R20, {fmt(against_base['corruptions/impulse_noise'])}"
        in WRITEUP
    )
    gaussian_pp = per_seed(pp, base, "corruptions/gaussian_noise")
    gaussian_aa = per_seed(aa, base, "corruptions/gaussian_noise")
    assert all(p < a for p, a in zip(gaussian_pp, gaussian_aa))  # push-pull's distinct gain
    assert f"{gaussian_pp[1]:+.2f} against {gaussian_aa[1]:+.2f} at seed 1" in WRITEUP
