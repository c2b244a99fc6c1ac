"""Training configuration: one dataclass, recipes as YAML files of its fields, command-line overrides.

A recipe (``recipes/<name>.yaml`` or any YAML path) sets the fields of a paper setting; every field
can then be overridden, either with its own flag (``--epochs 3 --lr 0.05``) or with
``--set key=value`` (``--set model_kwargs.pp_pull_scale=3``). Values are parsed as YAML.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    import torch.nn as nn

RECIPES_DIR = Path(__file__).parent / "recipes"

SCHEDULERS = ("multistep", "cosine", "onecycle", "constant")
MIXED_PRECISION = ("no", "fp16", "bf16")
# timm's interpolation names (timm.data.transforms.str_to_interp_mode), and its "random"
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos", "random")
# the input side beyond which one image of a batch alone takes most of a machine's memory
MAX_IMG_SIZE = 4096
# every loader worker is a process: hundreds of them exhaust a machine before loading anything
MAX_WORKERS = 256
# fields left unset (None) follow the model's pretrained_cfg, as timm's resolve_data_config does
MODEL_DATA_FIELDS = ("in_chans", "img_size", "mean", "std")


INF = math.inf
# numeric field (or each entry of a list field) -> (test, the allowed values in words); a NaN fails
# every comparison, so each test refuses NaN, and each bound below INF refuses the infinities
NUMERIC_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "num_classes": (lambda x: x >= 1, "an integer >= 1"),
    "in_chans": (lambda x: x in (1, 3), "1 (grey) or 3 (RGB)"),
    "img_size": (lambda x: 1 <= x <= MAX_IMG_SIZE, f"an integer in [1, {MAX_IMG_SIZE}]"),
    "mean": (lambda x: 0 <= x <= 1, "numbers in [0, 1], one per input channel"),
    "std": (lambda x: 0 < x < INF, "finite numbers > 0, one per input channel"),
    "train_samples": (lambda x: x >= 1, "an integer >= 1, or null for the whole split"),
    "val_samples": (lambda x: x >= 1, "an integer >= 1, or null for the whole split"),
    "padding": (lambda x: x >= 0, "an integer >= 0"),
    "hflip": (lambda x: 0 <= x <= 1, "a probability in [0, 1]"),
    "cutout": (lambda x: x >= 0, "an integer >= 0 (0: no Cutout)"),
    "color_jitter": (lambda x: 0 <= x < INF, "a finite number >= 0"),
    "crop_pct": (lambda x: 0 < x <= 1, "a number in (0, 1]"),
    "workers": (lambda x: 0 <= x <= MAX_WORKERS, f"an integer in [0, {MAX_WORKERS}]"),
    "epochs": (lambda x: x >= 1, "an integer >= 1"),
    "batch_size": (lambda x: x >= 1, "an integer >= 1"),
    "eval_batch_size": (lambda x: x >= 1, "an integer >= 1"),
    "lr": (lambda x: 0 < x < INF, "a finite number > 0"),
    "momentum": (lambda x: 0 <= x < 1, "a number in [0, 1)"),
    "weight_decay": (lambda x: 0 <= x < INF, "a finite number >= 0"),
    "milestones": (lambda x: x >= 1, "epochs, integers >= 1"),
    "gamma": (lambda x: 0 < x < INF, "a finite number > 0"),
    "label_smoothing": (lambda x: 0 <= x <= 1, "a number in [0, 1]"),
    # NumPy's seed range: the trainer seeds NumPy with it
    "seed": (lambda x: 0 <= x < 2**32, "an integer in [0, 2**32)"),
    "max_steps": (lambda x: x >= 1, "an integer >= 1, or null for no limit"),
}

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
    num_classes: int | None = None  # None: the dataset's number of classes
    # None: from the model's pretrained_cfg (its input_size, mean and std)
    in_chans: int | None = None
    img_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
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
        """Refuse, naming the field and its allowed values, anything a run cannot use."""
        from timm.optim import list_optimizers

        from ..data.transforms_factory import CROP_MODES

        choices = dict(
            opt=list_optimizers(),
            sched=SCHEDULERS,
            mixed_precision=MIXED_PRECISION,
            crop=CROP_MODES,
            interpolation=INTERPOLATIONS,
        )
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InvalidArgumentError(f"{name}={getattr(self, name)!r}; allowed: {allowed}")
        for name, (test, words) in NUMERIC_RULES.items():
            value = getattr(self, name)
            if value is not None and not all(
                map(test, value if isinstance(value, list) else [value])
            ):
                raise InvalidArgumentError(f"{name}={value!r}; allowed: {words}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is None:
                continue
            if not values or (self.in_chans is not None and len(values) != self.in_chans):
                raise InvalidArgumentError(
                    f"{name}={values}; allowed: one value per input channel "
                    f"(in_chans={self.in_chans})"
                )
        for name in ("model_kwargs", "convert_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise InvalidArgumentError(
                    f"{name}={getattr(self, name)!r}; allowed: a mapping of keyword: value"
                )
        own = sorted({"num_classes", "in_chans"} & set(self.model_kwargs))
        if own:
            raise InvalidArgumentError(
                f"model_kwargs sets {own}: give them as settings of their own (--num-classes, "
                "--in-chans), which the data pipeline follows too"
            )
        if self.auto_augment is not None:
            _check_auto_augment(self.auto_augment)
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


def with_model_data_config(cfg: TrainConfig, model: nn.Module) -> TrainConfig:
    """``cfg`` with the data fields it leaves unset (:data:`MODEL_DATA_FIELDS`) taken from
    ``model``'s pretrained_cfg, completed with timm's defaults by
    :func:`timm.data.resolve_data_config`, as timm's own scripts do; set fields are kept."""
    from timm.data import resolve_data_config

    data = resolve_data_config(model=model)
    channels, height, width = data["input_size"]
    source = f"the pretrained_cfg of {cfg.model_name}"
    if cfg.img_size is None and height != width:
        raise InvalidArgumentError(
            f"{source} has input_size {tuple(data['input_size'])}; training makes square images: "
            "set img_size"
        )
    from_model = dict(
        in_chans=channels,
        img_size=width,
        mean=list(data["mean"]),
        std=list(data["std"]),
    )
    filled = {name: value for name, value in from_model.items() if getattr(cfg, name) is None}
    in_chans = cfg.in_chans if cfg.in_chans is not None else channels
    for name in ("mean", "std"):
        values = getattr(cfg, name)
        if values is not None and len(values) != in_chans:  # set, for the model's channels
            raise InvalidArgumentError(
                f"{name}={values}; allowed: {in_chans} value(s), one per input channel "
                f"(in_chans={in_chans}, from {source}): set in_chans, or {name} to fit"
            )
        values = filled.get(name)
        if values is not None and len(values) != in_chans:
            if len(values) != 1:
                raise InvalidArgumentError(
                    f"{source} has {len(values)} {name} values, the {in_chans} input channel(s) "
                    f"of this run need {in_chans}: set {name}"
                )
            filled[name] = values * in_chans  # one grey statistic for every channel, as timm does
    try:
        return dataclasses.replace(cfg, **filled)
    except InvalidArgumentError as error:  # the set fields were valid: a value from the model
        raise InvalidArgumentError(f"{source}: {error}") from None


def _check_auto_augment(spec: str) -> None:
    from ..data.auto_augment import AUTO_AUGMENT_CHOICES, create_auto_augment

    try:
        create_auto_augment(spec, 32, (0.5,))
    except InvalidArgumentError:
        raise
    # timm's policy-string parsers fail with whatever their parsing hits (assert, KeyError,
    # IndexError, ValueError): any failure means the string is not a policy they read
    except Exception as error:
        raise InvalidArgumentError(
            f"auto_augment={spec!r} is not a policy timm reads ({type(error).__name__}: "
            f"{error}); allowed: {', '.join(AUTO_AUGMENT_CHOICES)}"
        ) from None


def _to_int(value: Any) -> int:
    """An integer from an int, an integral float or text (``"1e3"``); never a bool or 2.5."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    number = float(value)
    if not number.is_integer():  # also NaN and infinities
        raise ValueError(f"{value!r} is not an integer")
    return int(number)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a bool is not a number")
    return float(value)


_SCALARS = {"float": _to_float, "int": _to_int}


def _allowed(name: str) -> str:
    """The values setting ``name`` allows, in words (its type where no rule says more)."""
    if name in NUMERIC_RULES:
        return NUMERIC_RULES[name][1]
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    return types.get(name, "a YAML value")


def _coerce(name: str, annotation: str, value: Any) -> Any:
    """Convert YAML/command-line values to the field's type: PyYAML reads ``1e-4`` as a string, and
    ``30,60`` is accepted for a list."""
    if value is None:
        return value
    kind = annotation.split(" | ")[0]
    allowed = _allowed(name)
    try:
        if kind in _SCALARS:
            return _SCALARS[kind](value)
        if kind.startswith("list["):
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                value = [value]
            return [_SCALARS[kind[5:-1]](v) for v in value]
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(f"{name}={value!r}; allowed: {allowed}") from None
    if kind == "str":
        return str(value)
    if kind == "bool" and not isinstance(value, bool):
        raise InvalidArgumentError(f"{name}={value!r}; allowed: true or false")
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
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InvalidArgumentError(f"recipe {path} is not a readable YAML file: {error}") from None
    if not isinstance(values, dict):
        raise InvalidArgumentError(f"recipe {path} must be a mapping of field: value")
    unknown = sorted(str(key) for key in set(values) - set(FIELD_NAMES))
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
    return key.strip(), parse_value(key.strip(), value)


def parse_value(name: str, text: str) -> Any:
    """A setting's value as written on the command line, parsed as YAML (``3``, ``1e-4``, ``[1, 2]``)."""
    if not isinstance(text, str):  # argparse hands `--epochs=--` over as a list
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or type(error).__name__
        raise InvalidArgumentError(
            f"{name}={text!r} is not a YAML value ({problem}); allowed: {_allowed(name)}"
        ) from None


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
