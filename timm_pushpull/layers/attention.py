"""Parameter-free attention for the push response (SE comes from timm's ``SEModule``).

SimAM: Yang et al., "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural
Networks", ICML 2021. timm has no SimAM, hence this one.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


def simam(x: Tensor, eps: float = 1e-4) -> Tensor:
    """Weight each activation by the sigmoid of its inverse energy within its channel."""
    spatial = x.shape[2] * x.shape[3] - 1
    deviation = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
    variance = deviation.sum(dim=(2, 3), keepdim=True) / max(spatial, 1)
    return x * torch.sigmoid(deviation / (4 * (variance + eps)) + 0.5)


class SimAM(nn.Module):
    def __init__(self, eps: float = 1e-4) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return simam(x, self.eps)
