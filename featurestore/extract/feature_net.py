"""A backbone wrapped to take the reader's ``uint8 (n, S, S, 3)`` crops directly."""

from __future__ import annotations

import torch
from torch import nn

from featurestore.backbones import Preprocessing


class FeatureNet(nn.Module):
    """``uint8 NHWC`` -> normalised float ``NCHW`` -> backbone -> ``(n, dim)`` features.

    The permuted input is already channels-last in memory, which is the layout the GPU path
    wants; ``(x / 255 - mean) / std`` is folded into one multiply-add.
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing):
        super().__init__()
        self.model = model
        mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(preprocessing.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", mean / std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float() * self.scale - self.shift
        return self.model(x).flatten(1).float()
