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
        self.preprocessing = preprocessing
        mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(preprocessing.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", mean / std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.embed(pixels.permute(0, 3, 1, 2))

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(n, 3, S, S)`` pixel values 0-255 (any dtype) -> ``(n, dim)`` float32 features."""
        x = pixels.float() * self.scale - self.shift
        return self.model(x).flatten(1).float()

    def forward_stored(self, images: torch.Tensor) -> torch.Tensor:
        """Equal-sized images as stored (``uint8 (n, H, W)`` or ``(n, H, W, 3)``), resized and
        cropped here, on the model's device, instead of by the reader."""
        # Resampled in float32 whatever the autocast, so the rounding to whole levels is exact.
        with torch.autocast(images.device.type, enabled=False):
            pixels = self.preprocessing.apply_tensor(images)
        return self.embed(pixels.contiguous(memory_format=torch.channels_last))
