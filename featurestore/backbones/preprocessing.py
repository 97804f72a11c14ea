"""The exact input transform a backbone's weights were trained with.

Resize the shorter side to ``resize``, centre-crop ``size`` x ``size``, scale to [0, 1], subtract
``mean`` and divide by ``std``. The resize and crop follow torchvision's ``Resize(int)`` and
``CenterCrop`` on PIL images to the pixel, so the fast path and the torchvision reference path
feed a model the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from featurestore.errors import InvalidName

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
#: filters ``apply_tensor`` reproduces in torch (its nearest picks other pixels than Pillow's at
#: some scales; no pretrained weights here use nearest)
TORCH_FILTERS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class Preprocessing:
    """Resize, crop, interpolation and normalisation expected by one set of weights."""

    size: int
    resize: int
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise InvalidName(f"interpolation {self.interpolation!r} is not one of {sorted(INTERPOLATIONS)}")
        if self.resize < self.size:
            raise InvalidName(f"resize {self.resize} is smaller than the crop {self.size}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def as_dict(self) -> dict:
        """JSON-ready description, recorded in every store's fingerprint."""
        return {"size": self.size, "resize": self.resize, "crop": "center", "interpolation": self.interpolation,
                "mean": list(self.mean), "std": list(self.std)}

    def resized_shape(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resizing the shorter side to ``resize`` (torchvision's rounding)."""
        short, long = sorted((width, height))
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def apply(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """An RGB or greyscale (``L``) Pillow image, or its ``uint8 (H, W, 3)`` / ``(H, W)`` array ->
        ``uint8 (size, size, 3)`` model input.

        A greyscale image is resized in its one channel and copied to three channels last:
        the filter works per channel, so the bytes equal those of resizing its RGB copy, for
        a third of the work.
        """
        if not isinstance(image, Image.Image):
            image = Image.fromarray(image)
        width, height = self.resized_shape(*image.size)
        if (width, height) != image.size:
            image = image.resize((width, height), INTERPOLATIONS[self.interpolation])
        # CenterCrop's rounding, so both paths cut the same window.
        top = int(round((height - self.size) / 2.0))
        left = int(round((width - self.size) / 2.0))
        crop = image.crop((left, top, left + self.size, top + self.size)).convert("RGB")
        # tobytes packs Pillow's 4-byte RGB pixels in C; np.asarray would do it in slower steps.
        return np.frombuffer(crop.tobytes(), np.uint8).reshape(self.size, self.size, 3)

    def apply_tensor(self, images):
        """``apply`` for a batch of equal-sized images in torch, on the images' device.

        ``uint8 (n, H, W)`` greyscale or ``(n, H, W, 3)`` -> ``float32 (n, 3, size, size)`` holding
        0-255 values within two levels of ``apply``'s (measured on Fashion-MNIST and photos: at
        most about 1% of values differ, by one level, where Pillow's fixed-point filter rounds
        the other way).
        """
        import torch.nn.functional as F

        if self.interpolation not in TORCH_FILTERS:
            raise InvalidName(f"interpolation {self.interpolation!r} has no exact torch version; resize with "
                              f"Pillow (reader 'threads' or 'processes')")
        x = (images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)).float()
        height, width = x.shape[-2:]
        new_width, new_height = self.resized_shape(width, height)
        # Pillow resamples rows, then columns, rounding and clipping to uint8 after each pass;
        # one 2-D pass in float keeps the bicubic overshoot and drifts by up to 13 levels.
        for size in ((height, new_width), (new_height, new_width)):
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode=self.interpolation, antialias=True, align_corners=False)
                x = x.round_().clamp_(0, 255)
        top = int(round((new_height - self.size) / 2.0))
        left = int(round((new_width - self.size) / 2.0))
        x = x[..., top:top + self.size, left:left + self.size]
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        """``uint8 (n, S, S, 3)`` -> normalised ``float32 (n, 3, S, S)``."""
        scale = np.float32(1.0 / 255.0)
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        pixels = batch.astype(np.float32) * scale
        return np.ascontiguousarray(((pixels - mean) / std).transpose(0, 3, 1, 2))

    def torchvision_transform(self):
        """The reference transform on PIL images, built from torchvision's own classes."""
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode

        return transforms.Compose([
            transforms.Resize(self.resize, interpolation=InterpolationMode(self.interpolation)),
            transforms.CenterCrop(self.size),
            transforms.ToTensor(),
            transforms.Normalize(self.mean, self.std),
        ])
