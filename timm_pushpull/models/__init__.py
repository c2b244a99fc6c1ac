"""timm entrypoints of the papers' networks; importing this module registers them with timm."""

from . import _builder  # noqa: F401
from .cifar_densenet import CifarDenseNet
from .cifar_resnet import CifarResNet
from .cifar_wrn import WRN_CONFIGS  # noqa: F401  (registers the Wide ResNets)
from .imagenet_resnet_pp import checkpoint_filter_fn, create_pushpull_resnet
from .lenet import LeNet5
from .official import OFFICIAL_CHECKPOINTS, convert_official_checkpoint, convert_official_folder

__all__ = [
    "CifarDenseNet",
    "CifarResNet",
    "LeNet5",
    "OFFICIAL_CHECKPOINTS",
    "checkpoint_filter_fn",
    "convert_official_checkpoint",
    "convert_official_folder",
    "create_pushpull_resnet",
]
