"""Decoding one image file to RGB, the same way for verification and for reading."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Transparent pixels are composited on white: dropping alpha would expose whatever colour the
# encoder left under it, which differs between tools for the same visible picture.
_BACKGROUND = (255, 255, 255)
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Return ``image`` as 8-bit RGB: palette, alpha, greyscale, CMYK and 16-bit handled."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT:
        # convert("L") would clip 16-bit values at 255; scale the 16-bit range down instead.
        # Pillow also opens some 16-bit files as "I", so that mode is read as 16-bit too.
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        grey = (values >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_rgb(path) -> Image.Image:
    """Decode the image file at ``path`` to an 8-bit RGB Pillow image, loaded (the file is closed)."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(image)
