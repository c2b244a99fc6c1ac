"""Training configuration: one dataclass, recipes as YAML files of its fields, command-line overrides.

A recipe (``recipes/<name>.yaml`` or any YAML path) sets the fields of a paper setting; every field
can then be overridden, either with its own flag (``--epochs 3 --lr 0.05``) or with
``--set key=value`` (``--set model_kwargs.pp_pull_scale=3``). Values are parsed as YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidArgumentError

RECIPES_DIR = Path(__file__).parent / "recipes"

SCHEDULERS = ("multistep", "cosine", "constant")
MIXED_PRECISION = ("no", "fp16", "bf16")

# Fields that do not change what is trained: a resumed run may change them.
RUN_CONTROL_FIELDS = frozenset(
    {
        "epochs",
        "max_steps",
        "resume",
        "overwrite",
        "output",
        "workers",
        "progress",
        "tensorboard",
        "cpu",
    }
)


@dataclass
class TrainConfig:
    """Everything a training run depends on (defaults: the CIFAR ResNet recipe)."""

    # model
    model: str | None = None  # a timm model name (ours are registered on `import timm_pushpull`)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {pp_pull_scale: 3, aa: bin5}
    pretrained: bool = False
    # start from weights: a timm model name (pretrained weights), a local model folder
    # (config.json + model.safetensors) or a weights file for `model`
    init_from: str | None = None
    convert: str | None = (
        None  # convert_to_pushpull scope: "stem", "stage1" or comma-separated module names
    )
    convert_kwargs: dict[str, Any] = field(
        default_factory=dict
    )  # PushPull2d kwargs for the conversion
    # data
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    train_split: str = "train"
    val_split: str = "test"
    train_samples: int | None = None  # a fixed random subset of the training split
    val_samples: int | None = None
    num_classes: int = 10
    in_chans: int = 3
    img_size: int = 32
    mean: list[float] = field(default_factory=lambda: [0.4914, 0.4822, 0.4465])
    std: list[float] = field(default_factory=lambda: [0.2470, 0.2435, 0.2616])
    crop: str = "pad"  # pad (CIFAR) | rrc (ImageNet) | none
    padding: int = 4
    hflip: float = 0.5
    auto_augment: str | None = None  # cifar10 | original | v0 | rand-m9-mstd0.5 | augmix-...
    cutout: int = 0  # side of the Cutout square in pixels, 0 = off
    color_jitter: float = 0.0
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    workers: int = 2
    # optimisation
    epochs: int = 200
    batch_size: int = 128  # global: split over processes
    eval_batch_size: int = 256
    opt: str = "sgd"  # any timm optimizer; "sgd" honours `nesterov`
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    filter_bias_and_bn: bool = False  # timm's option; the papers decay every parameter
    sched: str = "multistep"
    milestones: list[int] = field(default_factory=lambda: [80, 120, 160])
    gamma: float = 0.1
    label_smoothing: float = 0.0
    # run
    seed: int = 0
    mixed_precision: str = "no"
    cpu: bool = False
    output: str | None = None
    resume: bool = False
    overwrite: bool = False
    max_steps: int | None = (
        None  # stop (with a resumable checkpoint) after this many optimizer steps
    )
    progress: bool = True
    tensorboard: bool = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:
        from timm.optim import list_optimizers

        choices = dict(opt=list_optimizers(), sched=SCHEDULERS, mixed_precision=MIXED_PRECISION)
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InvalidArgumentError(f"{name}={getattr(self, name)!r}; allowed: {allowed}")
        for name in ("epochs", "batch_size", "eval_batch_size", "num_classes", "img_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise InvalidArgumentError(
                    f"{name}={getattr(self, name)!r}; must be a positive integer"
                )
        if self.lr <= 0:
            raise InvalidArgumentError(f"lr={self.lr}; must be positive")
        if self.max_steps is not None and self.max_steps <= 0:
            raise InvalidArgumentError(
                f"max_steps={self.max_steps}; must be positive (or null for no limit)"
            )
        if self.resume and self.overwrite:
            raise InvalidArgumentError(
                "resume and overwrite exclude each other: resume continues the run in output"
            )

    @property
    def model_name(self) -> str:
        """The name the run is known by (the model, or where its weights came from)."""
        if self.model:
            return self.model
        if self.init_from:
            return Path(self.init_from).name or self.init_from
        raise InvalidArgumentError(
            "set model (a timm model name) or init_from (weights to start from)"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SCALARS = {"float": float, "int": int}


def _coerce(name: str, annotation: str, value: Any) -> Any:
    """Convert YAML/command-line values to the field's type: PyYAML reads ``1e-4`` as a string, and
    ``30,60`` is accepted for a list."""
    if value is None:
        return value
    kind = annotation.split(" | ")[0]
    try:
        if kind in _SCALARS and not isinstance(value, bool):
            return _SCALARS[kind](value)
        if kind.startswith("list["):
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                value = [value]
            return [_SCALARS[kind[5:-1]](v) for v in value]
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{name}={value!r} is not a valid {annotation}") from e
    if kind == "str":
        return str(value)
    if kind == "bool" and not isinstance(value, bool):
        raise InvalidArgumentError(f"{name}={value!r}; expected true or false")
    return value


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def read_recipe(recipe: str) -> dict[str, Any]:
    """The fields set by ``recipe``: a name from ``recipes/`` or a path to a YAML file."""
    path = Path(recipe)
    if not path.is_file():
        path = RECIPES_DIR / f"{recipe}.yaml"
        if not path.is_file():
            raise InvalidArgumentError(
                f"recipe={recipe!r} is neither a file nor one of {available_recipes()}"
            )
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise InvalidArgumentError(f"recipe {path} must be a mapping of field: value")
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise InvalidArgumentError(
            f"recipe {path}: unknown fields {unknown}; allowed: {list(FIELD_NAMES)}"
        )
    return values


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> (key, YAML-parsed value); ``key`` may be dotted into a dict field."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidArgumentError(f"--set {text!r}: expected key=value")
    return key.strip(), yaml.safe_load(value)


def apply_overrides(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``values`` updated with ``overrides``; a dotted key ``a.b`` sets entry ``b`` of dict field ``a``."""
    values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for key, value in overrides.items():
        name, _, entry = key.partition(".")
        if name not in FIELD_NAMES:
            raise InvalidArgumentError(f"unknown setting {name!r}; allowed: {list(FIELD_NAMES)}")
        if entry:
            values.setdefault(name, {})
            if not isinstance(values[name], dict):
                raise InvalidArgumentError(
                    f"{name} is not a mapping, so {key!r} cannot set an entry of it"
                )
            values[name][entry] = value
        else:
            values[name] = value
    return values


def build_config(recipe: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A validated config: dataclass defaults < recipe < overrides."""
    values = read_recipe(recipe) if recipe else {}
    return TrainConfig(**apply_overrides(values, overrides or {}))
