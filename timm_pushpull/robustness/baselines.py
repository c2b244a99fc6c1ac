"""Reference models that CE, rCE and flip rates are normalised by.

Built in:
- ``alexnet-imagenetc``: AlexNet on ImageNet-C, per corruption and severity, from Hendrycks &
  Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations"
  (ICLR 2019), as produced by their evaluation code (github.com/hendrycks/robustness,
  ImageNet-C/test.py) and reused e.g. by AugMix (github.com/google-research/augmix, imagenet.py,
  ``ALEXNET_ERR``: the means over severities of the table below). Clean error 43.5 % (paper,
  Table 1). Only the 15 standard corruptions: the paper publishes no AlexNet errors for the 4
  extra ones, so those get no CE.
- ``alexnet-cifar10c``: AlexNet on CIFAR-10-C as published by Strisciuglio, Lopez-Antequera and
  Petkov, "Enhanced robustness of convolutional networks with a push-pull inhibition layer"
  (Neural Computing and Applications, 2020): % error averaged over the 5 severities, all 19
  corruptions, clean error 13.87 %.

Any earlier ``results.json`` of ``timm-pushpull evaluate`` or a folder of the push-pull authors'
text results (``C_details.txt``, ``P_flipprob.txt``, optional ``test_clean.txt``) serves as a
baseline too, see :func:`get_baseline`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidArgumentError
from .results import RESULTS_FILE, load_results, severities, validate_results

__all__ = [
    "Baseline",
    "BUILTIN_BASELINES",
    "get_baseline",
    "read_official_results",
]

_STANDARD_15 = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression",
)  # fmt: skip


@dataclass(frozen=True)
class Baseline:
    """Errors (fractions) of a reference model.

    ``corruption_errors[name]`` is a tuple of errors, one per severity of ``severities``, or one
    float when only the mean over all five severities is published. ``mce_corruptions`` are the corruptions whose CEs the
    mCE averages.
    """

    name: str
    source: str
    clean_error: float | None
    corruption_errors: Mapping[str, tuple[float, ...] | float] = field(default_factory=dict)
    flip_probabilities: Mapping[str, float] = field(default_factory=dict)
    mce_corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)

    def mean_errors(self) -> dict[str, float]:
        """Error per corruption averaged over severities."""
        return {
            name: errs if isinstance(errs, float) else sum(errs) / len(errs)
            for name, errs in self.corruption_errors.items()
        }

    def to_dict(self) -> dict:
        """The baseline as stored in results.json (``corruption_errors``: means over its
        ``severities``)."""
        return {
            "name": self.name,
            "source": self.source,
            "clean_error": self.clean_error,
            "severities": list(self.severities),
            "corruption_errors": self.mean_errors(),
            "flip_probabilities": dict(self.flip_probabilities),
        }


def _percent(table: Mapping[str, float]) -> dict[str, float]:
    return {name: round(value / 100, 6) for name, value in table.items()}


ALEXNET_IMAGENET_C = Baseline(
    name="alexnet-imagenetc",
    source="Hendrycks & Dietterich, ICLR 2019 (github.com/hendrycks/robustness): AlexNet on ImageNet-C",
    clean_error=0.435,
    corruption_errors={
        "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
        "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
        "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
        "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
        "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
        "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
        "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
        "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
        "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
        "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
        "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
        "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
        "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
        "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
        "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
    },
    mce_corruptions=_STANDARD_15,
)

_ALEXNET_CIFAR10_C_PERCENT = {
    "gaussian_noise": 38.44, "shot_noise": 31.82, "impulse_noise": 46.13, "defocus_blur": 23.53,
    "glass_blur": 40.97, "motion_blur": 29.32, "zoom_blur": 26.89, "snow": 26.94, "frost": 28.26,
    "fog": 30.31, "brightness": 17.84, "contrast": 46.77, "elastic_transform": 22.25,
    "pixelate": 18.36, "jpeg_compression": 18.48, "speckle_noise": 31.26, "gaussian_blur": 27.78,
    "spatter": 25.19, "saturate": 22.15,
}  # fmt: skip

ALEXNET_CIFAR10_C = Baseline(
    name="alexnet-cifar10c",
    source="Strisciuglio, Lopez-Antequera & Petkov, Neural Comput. Appl. 2020: AlexNet on CIFAR-10-C",
    clean_error=0.1387,
    corruption_errors=_percent(_ALEXNET_CIFAR10_C_PERCENT),
    mce_corruptions=tuple(_ALEXNET_CIFAR10_C_PERCENT),
)

BUILTIN_BASELINES: dict[str, Baseline] = {
    baseline.name: baseline for baseline in (ALEXNET_IMAGENET_C, ALEXNET_CIFAR10_C)
}


def get_baseline(spec: str | Path | Baseline | Mapping | None) -> Baseline | None:
    """A baseline from a built-in name, a results.json (path or dict) or an authors' results folder."""
    if spec is None or isinstance(spec, Baseline):
        return spec
    if isinstance(spec, Mapping):
        return _from_results(validate_results(spec, "baseline results"))
    if str(spec) in BUILTIN_BASELINES:
        return BUILTIN_BASELINES[str(spec)]
    path = Path(spec)
    if path.is_file() or (path / RESULTS_FILE).is_file():
        return _from_results(load_results(path))
    if path.is_dir() and (path / "C_details.txt").is_file():
        results = read_official_results(path)
        return Baseline(
            name=path.name,
            source=f"authors' text results in {path}",
            clean_error=results["clean_error"],
            corruption_errors={k: tuple(v) for k, v in results["corruptions"].items()},
            flip_probabilities=results["perturbations"],
            mce_corruptions=tuple(results["corruptions"]),
        )
    raise InvalidArgumentError(
        f"baseline must be one of {sorted(BUILTIN_BASELINES)}, a results.json file (or a folder "
        f"with one) or a folder with C_details.txt; got {spec!r}"
    )


def _from_results(results: Mapping) -> Baseline:
    """A validated results.json as a baseline: its errors on the severities it was evaluated on."""
    corruptions, perturbations = results["corruptions"], results["perturbations"]
    return Baseline(
        name=str(results.get("model", "results")),
        source="results.json of timm-pushpull evaluate",
        clean_error=results["clean_error"],
        corruption_errors={k: tuple(v["errors"]) for k, v in corruptions.items()},
        flip_probabilities={k: v["flip_probability"] for k, v in perturbations.items()},
        mce_corruptions=tuple(corruptions),
        severities=tuple(severities(results)),
    )


# "gaussian_noise: 0.2954 0.4953 ..." (C_details.txt) and
# "Perturbation: gaussian_noise   | Flip Prob: 0.08229" (P_flipprob.txt)
_DETAILS_LINE = re.compile(r"^\s*([a-z_]+)\s*:\s*((?:[-+0-9.eE]+\s*)+)$")
_FLIP_LINE = re.compile(r"^\s*Perturbation:\s*([a-z_]+)\s*\|\s*Flip Prob:\s*([-+0-9.eE]+)\s*$")
_CLEAN_ACCURACY = re.compile(r"Test accuracy clean:\s*([0-9.]+)")


def read_official_results(folder: str | Path) -> dict:
    """Parse the push-pull authors' text results of one model.

    ``C_details.txt`` (error fractions per corruption, severities 1..5), ``P_flipprob.txt``
    (flip probability per perturbation, optional) and ``test_clean.txt`` (their test log; the last
    "Test accuracy clean" in % gives the clean error, optional). Returns
    ``{"clean_error": float | None, "corruptions": {name: [e1..e5]}, "perturbations": {name: fp}}``.
    """
    folder = Path(folder)
    details = folder / "C_details.txt"
    if not details.is_file():
        raise InvalidArgumentError(f"no C_details.txt in {folder}")
    corruptions = {}
    for number, line in enumerate(details.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        match = _DETAILS_LINE.match(line)
        if match is None:
            raise InvalidArgumentError(
                f"{details}:{number}: expected 'name: e1 e2 ...', got {line!r}"
            )
        corruptions[match.group(1)] = [float(value) for value in match.group(2).split()]
    perturbations = {}
    flips = folder / "P_flipprob.txt"
    if flips.is_file():
        for number, line in enumerate(flips.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            match = _FLIP_LINE.match(line)
            if match is None:
                raise InvalidArgumentError(
                    f"{flips}:{number}: expected 'Perturbation: name | Flip Prob: p', got {line!r}"
                )
            perturbations[match.group(1)] = float(match.group(2))
    clean_error = None
    clean_log = folder / "test_clean.txt"
    if clean_log.is_file():
        accuracies = _CLEAN_ACCURACY.findall(clean_log.read_text())
        if accuracies:
            clean_error = round(1 - float(accuracies[-1]) / 100, 6)
    return {"clean_error": clean_error, "corruptions": corruptions, "perturbations": perturbations}
