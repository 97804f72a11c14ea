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

    def forward_stored(self, images: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Images resized and cropped here, on the model's device, instead of by the reader:
        equal-sized ones as stored (``uint8 (n, H, W)`` or ``(n, H, W, 3)``), or a list of
        ``uint8 (H, W, 3)`` images of any sizes (those of one size are resized in one call)."""
        if isinstance(images, torch.Tensor):
            device, groups = images.device, [(slice(None), images)]
        else:
            device, groups = images[0].device, _same_sized(images)
        # Resampled in float32 whatever the autocast, so the rounding to whole levels is exact.
        with torch.autocast(device.type, enabled=False):
            parts = [(rows, self.preprocessing.apply_tensor(group)) for rows, group in groups]
        if len(parts) == 1:
            pixels = parts[0][1]
        else:
            size = self.preprocessing.size
            pixels = torch.empty((len(images), 3, size, size), dtype=torch.float32, device=device)
            for rows, crops in parts:
                pixels[rows] = crops
        return self.embed(pixels.contiguous(memory_format=torch.channels_last))


def _same_sized(images: list[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
    """``images`` grouped by shape: (their positions, stacked)."""
    positions: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        positions.setdefault(tuple(image.shape), []).append(i)
    return [(rows, torch.stack([images[i] for i in rows])) for rows in positions.values()]
