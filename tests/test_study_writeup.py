"""The study's write-up (docs/study/README.md) and the README's evidence section quote numbers
that follow from the committed raw files (docs/study/results): re-derived here with numpy and
scipy alone from each cell's per_image.npz, not through the study's code, so the text cannot
drift from the data."""

import json
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


PLATEAU = "resnet_plateau"
R20, R20_PP, R20_B1, R20_AA = "R20 plateau", "R20-pp plateau", "R20-pp_b1 plateau", "R20+aa plateau"
PLATEAU_PAIRS = ((R20_PP, R20), (R20_B1, R20_PP), (R20_B1, R20), (R20_AA, R20))
SHORT = {R20: "R20", R20_PP: "R20-pp", R20_B1: "R20-pp_b1", R20_AA: "R20+aa"}


def plateau_seeds() -> list[int]:
    """The seeds finished for every model (the text counts one set for all four)."""
    found = {label: seeds(PLATEAU, label) for label in SHORT}
    assert len({tuple(v) for v in found.values()}) == 1, found
    return found[R20]


def per_seed(candidate: str, reference: str, test: str) -> list[float]:
    return [
        100 * (values_of(outcomes(PLATEAU, candidate, s), test).mean()
               - values_of(outcomes(PLATEAU, reference, s), test).mean())
        for s in plateau_seeds()
    ]  # fmt: skip


def listed(words: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'"""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def name_of(test: str) -> str:
    if test.startswith("noise_sweeps/"):
        name = f"{test.split('/')[1].replace('_', ' ')} sweep"
    else:
        name = {SHIFT: "shift consistency", "clean_error": "clean error"}.get(
            test, test.split("/")[-1].replace("_", " ")
        )
    return name.replace("gaussian", "Gaussian")


# columns of their own, and saturate: the identity on grey images, its error the clean error
OWN_COLUMNS = (MEAN_CE, "corruptions/gaussian_noise", SHIFT, "clean_error", "corruptions/saturate")


def plateau_row(candidate: str, reference: str) -> str:
    """The pair's row of the write-up's table, from the raw files."""
    tests = pair_tests(PLATEAU, candidate, reference)
    found = sorted((name_of(n) for n, d in tests.items() if clear(d) and n not in OWN_COLUMNS),
                   key=str.lower)  # fmt: skip
    survive = sorted((name_of(n) for n, d in tests.items() if holm(d)), key=str.lower)
    cells = [
        f"{SHORT[candidate]} vs {SHORT[reference]}",
        fmt(tests[MEAN_CE]),
        ", ".join(f"{v:+.2f}" for v in per_seed(candidate, reference, MEAN_CE)),
        fmt(tests["corruptions/gaussian_noise"]),
        fmt(tests[SHIFT]),
        fmt(tests["clean_error"]),
        ", ".join(found) or "none",
        ", ".join(survive) or "none",
    ]
    return "| " + " | ".join(cells) + " |"


def corruption_errors(label: str, seed: int) -> dict[str, float]:
    return {k.split("/")[1]: 100 * v.mean() for k, v in outcomes(PLATEAU, label, seed).items()
            if k.startswith("corruptions/")}  # fmt: skip


def test_plateau_cells_and_accuracy():
    finished = plateau_seeds()
    words = listed([str(s) for s in finished])
    title = f"### ResNet-20 at a plateau (seeds {words} of R20, R20-pp, R20-pp_b1 and R20+aa)"
    assert title in WRITEUP
    assert (
        f"Finished when this was written: seeds {words} of R20, R20-pp, R20-pp_b1 and R20+aa"
        in (WRITEUP)
    )
    assert f"{len(finished) * 4} of 12 finished (seeds {words} of each model)" in WRITEUP
    assert f"seeds {words} of each of the four models" in EVIDENCE
    assert f"Trained to a plateau (seeds {words} of each of the four models)" in WRITEUP
    count = {2: "two", 3: "three"}[len(finished)]
    assert f"Student-t intervals from {count} seeds" in WRITEUP
    width = stats.t.ppf(0.975, len(finished) - 1)
    assert f"{width:.1f} standard errors wide" in WRITEUP
    assert finished == [0, 1, 2] and "the whole group" in WRITEUP
    # the measured training time of the cells
    minutes = [
        sum(json.loads(line)["epoch_time_s"] for line in path.read_text().splitlines()) / 60
        for path in (CELLS / PLATEAU).glob("*/training/metrics.jsonl")
    ]
    assert len(minutes) == 12
    assert f"took {min(minutes):.0f}-{max(minutes):.0f} minutes per cell" in WRITEUP
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (
        f"took {min(minutes):.0f}-{max(minutes):.0f} minutes of training per cell here, "
        f"{sum(minutes) / 60:.1f} hours in all"
    ) in readme
    clean = {label: accuracy(PLATEAU, label)[0] for label in SHORT}
    assert all(v >= 90 for v in clean.values())  # issue 27's target
    assert (
        "clean accuracy (mean over the finished seeds) "
        + listed([f"{clean[label]:.2f}% ({SHORT[label]})" for label in SHORT])
        in WRITEUP
    )
    assert f"{min(clean.values()):.2f}-{max(clean.values()):.2f}% clean accuracy" in EVIDENCE
    # no corruption leaves the baseline near chance any more, at any seed
    errors = [corruption_errors(R20, s) for s in finished]
    worst = max(max(e.values()) for e in errors)
    assert worst < 75 and f"worst at any seed {worst:.1f}%" in WRITEUP
    mean = {c: np.mean([e[c] for e in errors]) for c in errors[0]}
    top = sorted(mean, key=mean.get, reverse=True)[:4]
    assert (
        "its highest errors, mean over its seeds: " + listed([f"{c} {mean[c]:.1f}%" for c in top])
        in WRITEUP
    )


def docs_lines() -> list[str]:
    return (ROOT / "docs" / "study" / "README.md").read_text().splitlines()


def test_plateau_pair_table():
    sizes = {len(pair_tests(PLATEAU, c, r)) for c, r in PLATEAU_PAIRS}
    assert len(sizes) == 1 and f"over the pair's {sizes.pop()} tests" in WRITEUP
    for candidate, reference in PLATEAU_PAIRS:
        assert plateau_row(candidate, reference) in docs_lines(), (candidate, reference)


def test_plateau_push_pull_claims():
    tests = pair_tests(PLATEAU, R20_PP, R20)
    assert all(d < 0 for d in per_seed(R20_PP, R20, MEAN_CE))  # "less ... at each seed"
    assert clear(tests[MEAN_CE]) and not any(holm(d) for d in tests.values())
    clean = per_seed(R20_PP, R20, "clean_error")
    assert clear(tests["clean_error"]) and min(clean) > 0  # "a small clean cost, clear too"
    assert f"{min(clean):.2f}-{max(clean):.2f} points more clean error" in WRITEUP
    assert (
        f"{fmt(tests[MEAN_CE])} over the seeds (clear, not after Holm's correction), at a clean "
        f"cost of {fmt(tests['clean_error'])} points"
    ) in EVIDENCE
    gains = {n.split("/")[1]: d[0] for n, d in tests.items() if n.startswith("corruptions/")}
    paper = {c: b - a for c, (a, b) in PAPER_CIFAR10C_RESNET20.items()}
    # the three largest gains, Gaussian noise among them (a gain at each seed, not clear)
    assert sorted(gains, key=gains.get)[:3] == ["frost", "gaussian_noise", "snow"]
    assert all(d < 0 for d in per_seed(R20_PP, R20, "corruptions/gaussian_noise"))
    assert not clear(tests["corruptions/gaussian_noise"]) and clear(tests["corruptions/snow"])
    # one decimal beside the paper's two where the report rounds ties of its means the other way
    assert (
        f"frost {gains['frost']:+.1f} (the paper {paper['frost']:+.2f}), Gaussian noise "
        f"{gains['gaussian_noise']:+.2f} (the paper {paper['gaussian_noise']:+.2f}; a gain at each "
        f"seed, not clear) and snow {gains['snow']:+.1f} (clear; the paper {paper['snow']:+.2f})"
    ) in WRITEUP
    # no gain on the other noises, where the paper gains 3.8-5.8 points
    others = ("shot_noise", "impulse_noise", "speckle_noise")
    assert f"{-max(paper[n] for n in others):.1f}-{-min(paper[n] for n in others):.1f} points" in (
        WRITEUP
    )
    for noise in others:
        assert abs(gains[noise]) < 0.5 and not clear(tests[f"corruptions/{noise}"])
        assert (
            f"{noise.replace('_', ' ')} ({gains[noise]:+.1f}; the paper {paper[noise]:+.2f})"
            in (WRITEUP)
        )
    # where the paper's push-pull is worse, ours has less error: clearly on snow and three blurs
    opposite = {c for c in paper if paper[c] > 0 > gains[c] and clear(tests[f"corruptions/{c}"])}
    assert opposite == {"snow", "defocus_blur", "zoom_blur", "gaussian_blur"}
    blurs = ", ".join(
        f"{c.replace('_', ' ').replace('gaussian', 'Gaussian')} {gains[c]:+.1f} (the paper "
        f"{paper[c]:+.2f})"
        for c in ("defocus_blur", "zoom_blur")
    )
    assert f"three blurs, {blurs} and Gaussian blur {gains['gaussian_blur']:+.1f}" in WRITEUP
    for corruption in ("fog", "brightness", "contrast"):
        assert 0 < paper[corruption] < 1.1 and gains[corruption] < 0
        assert not clear(tests[f"corruptions/{corruption}"])
        assert f"{corruption} {gains[corruption]:+.1f} (the paper {paper[corruption]:+.2f})" in (
            WRITEUP
        )
    # the gains follow the baseline's weak seeds
    errors = [corruption_errors(R20, s) for s in plateau_seeds()]
    for corruption in ("frost", "contrast", "fog", "brightness"):
        assert all(e[corruption] > errors[0][corruption] for e in errors[1:])
    weak = {c for e in errors for c in sorted(e, key=e.get, reverse=True)[:5]}
    top_gains = sorted(gains, key=gains.get)[:4]
    assert {"frost", "snow", "brightness"} <= weak & set(top_gains)
    assert "where the baseline is weak (frost, snow, brightness)" in WRITEUP
    frost = per_seed(R20_PP, R20, "corruptions/frost")
    assert frost == sorted(frost, reverse=True)  # grew with the baseline's frost error
    assert "(frost " + listed([f"{e['frost']:.1f}%" for e in errors]) + ")" in WRITEUP
    assert "frost gain grew with them (" + listed([f"{d:+.2f}" for d in frost]) + ")" in WRITEUP


def test_plateau_first_block_claims():
    assert all(d < 0 for d in per_seed(R20_B1, R20_PP, MEAN_CE))  # "less ... at each seed"
    against_pp = pair_tests(PLATEAU, R20_B1, R20_PP)
    assert not clear(against_pp[MEAN_CE])
    assert {n for n, d in against_pp.items() if holm(d)} == {"corruptions/glass_blur"}
    assert (
        f"glass blur alone survives Holm's correction ({fmt(against_pp['corruptions/glass_blur'])})"
        in (WRITEUP)
    )
    assert f"`_pp` at each seed, {fmt(against_pp[MEAN_CE])} (not clear)" in EVIDENCE
    # against R20, _pp_b1's Gaussian-noise gain is clear where _pp's is not
    gaussian = "corruptions/gaussian_noise"
    assert clear(pair_tests(PLATEAU, R20_B1, R20)[gaussian])
    assert not clear(pair_tests(PLATEAU, R20_PP, R20)[gaussian])


def test_plateau_anti_aliasing_claims():
    aa_less = [-d for d in per_seed(R20_AA, R20, MEAN_CE)]
    pp_less = [-d for d in per_seed(R20_PP, R20, MEAN_CE)]
    assert all(a > p > 0 for a, p in zip(aa_less, pp_less))  # "more than R20-pp at each"
    against_base = pair_tests(PLATEAU, R20_AA, R20)
    assert clear(against_base[MEAN_CE]) and not clear(against_base["clean_error"])
    assert f"does at least as well, {fmt(against_base[MEAN_CE])} over the seeds (clear)" in (
        EVIDENCE
    )
    # its largest gains are the baseline's four highest errors
    gains = {n.split("/")[1]: d[0] for n, d in against_base.items() if n.startswith("corruptions/")}
    top = sorted(gains, key=gains.get)[:4]
    errors = [corruption_errors(R20, s) for s in plateau_seeds()]
    mean = {c: np.mean([e[c] for e in errors]) for c in errors[0]}
    assert set(top) == set(sorted(mean, key=mean.get, reverse=True)[:4])
    assert "largest gains are on " + listed([f"{c} ({gains[c]:+.2f})" for c in top]) in WRITEUP
    assert "weakest corruptions (" + ", ".join(top) + ")" in EVIDENCE
    # push-pull's distinct gain: Gaussian noise, at each seed
    gaussian_pp = per_seed(R20_PP, R20, "corruptions/gaussian_noise")
    gaussian_aa = per_seed(R20_AA, R20, "corruptions/gaussian_noise")
    assert all(p < a for p, a in zip(gaussian_pp, gaussian_aa))
    assert (
        f"R20-pp {', '.join(f'{v:+.2f}' for v in gaussian_pp)} against R20+aa "
        f"{', '.join(f'{v:+.2f}' for v in gaussian_aa)}"
    ) in WRITEUP
