"""Datasets (torchvision, MNIST-format IDX files, HF ``datasets``, image folders) and the
augmentation used by the training recipes."""

from .auto_augment import CIFAR10_POLICY, cifar10_auto_augment, create_auto_augment
from .batch import collate_uint8, normalize_batch
from .cutout import Cutout, cutout
from .dataset_factory import DATASET_CHOICES, create_dataset, default_data_dir, subset
from .hf_image import HfImageDataset
from .idx import FASHION_MNIST_SYSTEM_DIR, IdxImageDataset, read_idx
from .reproducible import EpochShuffleSampler, SeededTransformDataset, sample_seed
from .transforms_factory import create_eval_transform, create_train_transform

__all__ = [
    "CIFAR10_POLICY",
    "DATASET_CHOICES",
    "FASHION_MNIST_SYSTEM_DIR",
    "Cutout",
    "EpochShuffleSampler",
    "HfImageDataset",
    "IdxImageDataset",
    "SeededTransformDataset",
    "cifar10_auto_augment",
    "collate_uint8",
    "create_auto_augment",
    "create_dataset",
    "create_eval_transform",
    "create_train_transform",
    "cutout",
    "default_data_dir",
    "normalize_batch",
    "read_idx",
    "sample_seed",
    "subset",
]
