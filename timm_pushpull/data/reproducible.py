"""Data order and augmentation as pure functions of (seed, epoch, sample index).

With both fixed, a run resumed mid-epoch (skipping the batches already seen) and a run on N
processes see exactly the batches, and the augmented images, of an uninterrupted single-process
run, whatever the number of loader workers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

_MIX = 0x9E3779B97F4A7C15  # 64-bit golden-ratio constant: spreads nearby (seed, epoch, index) apart


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that differs for every (seed, epoch, index)."""
    return ((seed * _MIX + epoch) * _MIX + index) % (1 << 63)


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation per epoch drawn from ``seed + epoch``; set ``epoch`` before iterating.

    Unlike ``RandomSampler`` the order does not depend on how many epochs were iterated before in
    this process, so resuming at epoch ``e`` reproduces epoch ``e``.
    """

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True):
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.num_samples))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


class SeededTransformDataset(Dataset):
    """Applies ``transform`` to ``dataset[i]``'s image with Python, NumPy and torch RNGs seeded from
    (seed, epoch, i), so random augmentation does not depend on worker count or iteration history.

    Set ``epoch`` before creating the loader iterator (workers copy the dataset when they start,
    so the loader must not use ``persistent_workers``). ``seed=None`` applies the transform
    unseeded, for transforms without randomness.
    """

    def __init__(self, dataset: Dataset, transform: Callable | None, seed: int | None = 0):
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        if self.transform is None:
            return image, target
        if self.seed is None:
            return self.transform(image), target
        seed = sample_seed(self.seed, self.epoch, index)
        # timm's AutoAugment draws from `random`, RandAugment from NumPy, torchvision from torch.
        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        if get_worker_info() is not None:
            torch.default_generator.manual_seed(seed)
            return self.transform(image), target
        # In the main process the torch RNG also drives dropout: leave its stream untouched.
        # (torch.manual_seed would also seed every accelerator backend, on every image: BENCHMARKS.md,
        # "Numbers once quoted in code comments".)
        state = torch.get_rng_state()
        torch.default_generator.manual_seed(seed)
        try:
            return self.transform(image), target
        finally:
            torch.set_rng_state(state)
