"""Batches of uint8 images: collated without per-sample tensor ops, normalised on the device.

As with timm's prefetcher, per-image transforms stop at a uint8 CHW array; the float conversion
and normalisation then run once per batch (on the GPU when there is one). On a small CPU this
matters: a torch op on one 28x28 image costs about as much as on a whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def collate_uint8(batch: Sequence[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[(uint8 CHW array, label), ...]`` -> (uint8 tensor [B, C, H, W], int64 labels [B])."""
    images = torch.from_numpy(np.stack([image for image, _ in batch]))
    return images, torch.tensor([label for _, label in batch], dtype=torch.int64)


def normalize_batch(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` (0..255) -> float32 ``(x / 255 - mean) / std`` per channel."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1) * 255
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1) * 255
    return (images.float() - mean_t) / std_t
