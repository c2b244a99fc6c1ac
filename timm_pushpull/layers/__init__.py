"""Layers: push-pull inhibition and anti-aliased downsampling, plus surgery for existing models."""

from .attention import SimAM, simam
from .blur_pool import (
    FILTER_TYPES,
    PAD_MODES,
    BlurPool2d,
    MaxBlurPool2d,
    blur_pool2d,
    blur_pool_class,
    blur_taps,
    parse_blur_spec,
)
from .exact_path import EXACT_PATHS, force_path
from .pull import PULL_IMPLS, PULL_MODES, Pull, fast_pull_weight, pull_kernel_size, pull_weight
from .pushpull import PushPull2d, create_pushpull, pushpull_conv_layer
from .surgery import (
    antialias,
    blur_before_conv,
    conv_act_blur,
    convert_to_pushpull,
    pushpull_from_conv,
    pushpull_targets,
)

__all__ = [
    "EXACT_PATHS", "FILTER_TYPES", "PAD_MODES", "PULL_IMPLS", "PULL_MODES", "BlurPool2d", "MaxBlurPool2d", "Pull", "PushPull2d",
    "SimAM", "antialias", "blur_before_conv", "blur_pool2d", "blur_pool_class", "blur_taps",
    "conv_act_blur", "convert_to_pushpull", "create_pushpull", "fast_pull_weight", "force_path", "parse_blur_spec",
    "pull_kernel_size", "pull_weight", "pushpull_conv_layer", "pushpull_from_conv", "pushpull_targets",
    "simam",
]  # fmt: skip
