"""Shared helpers for the backbone and extract tests: tiny real-photo datasets written per the manifest contract."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from featurestore.datasets.manifest import write_manifest
from featurestore.paths import dataset_dir


def real_photos() -> dict[str, np.ndarray]:
    """Real RGB photographs shipped with scikit-image and scikit-learn."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    samples = load_sample_images()
    return {"chelsea": skimage.data.chelsea(), "coffee": skimage.data.coffee(),
            "china": samples.images[0], "flower": samples.images[1], "astronaut": skimage.data.astronaut()}


def write_photo_dataset(root: Path, name: str = "photos", copies: int = 2, corrupt: int = 0,
                        size: int | None = 96, other_formats: bool = False) -> Path:
    """A dataset of real photos (each in a few crops, as JPEG), with ``corrupt`` undecodable files.

    ``size`` shrinks the photos so the tests stay fast; ``None`` keeps them whole.
    ``other_formats`` adds the first photo's first crop as a PNG and as a CMYK JPEG.
    """
    directory = dataset_dir(name, root)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    photos = real_photos()
    classes = sorted(photos)
    records = []
    for label, cls in enumerate(classes):
        image = Image.fromarray(photos[cls])
        for k in range(copies):
            w, h = image.size
            # Distinct views of the photo: shifted crops, mirrored on odd k.
            step = k % 7
            crop = image.crop((step * w // 20, step * h // 20, w - step * w // 24, h))
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if k % 2 else crop
            if size:
                crop = crop.resize((size, size * crop.size[1] // crop.size[0]), Image.Resampling.BILINEAR)
            rel = f"images/{cls}_{k}.jpg"
            crop.save(directory / rel, quality=92)
            records.append(_record(directory, rel, label, cls, "train" if k % 2 == 0 else "test", crop))
    if other_formats:
        first = Image.open(directory / records[0]["source"]).convert("RGB")
        for rel, image in (("images/png_copy.png", first), ("images/cmyk_copy.jpg", first.convert("CMYK"))):
            image.save(directory / rel)
            records.append(dict(_record(directory, rel, 0, classes[0], "train", image), mode=image.mode))
    for k in range(corrupt):
        rel = f"images/broken_{k}.jpg"
        data = (directory / records[0]["source"]).read_bytes()[:200]
        (directory / rel).write_bytes(data)  # a truncated JPEG: the header survives, the pixels do not
        records.append(dict(records[0], id=f"broken_{k}", source=rel, sha256=hashlib.sha256(data).hexdigest()))
    write_manifest(directory, pd.DataFrame(records), classes, {"source": "test photos"})
    return directory


def _record(directory: Path, rel: str, label: int, cls: str, split: str, image: Image.Image) -> dict:
    return {"id": rel, "source": rel, "label": label, "class_name": cls, "split": split,
            "fold": 0 if split == "train" else -1, "width": image.size[0], "height": image.size[1],
            "mode": "RGB", "sha256": hashlib.sha256((directory / rel).read_bytes()).hexdigest()}


def onnx_cache_dir(tmp_path_factory) -> Path:
    """One ONNX export cache per test session, shared by every test module that asks for it."""
    path = tmp_path_factory.getbasetemp() / "onnx-cache"
    path.mkdir(exist_ok=True)
    return path


def shared_cache_root(root: Path, cache: Path) -> Path:
    """Point ``root``'s export cache at ``cache`` so tests export each backbone to ONNX once."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cache").symlink_to(cache, target_is_directory=True)
    return root


def save_random_resnet18(path: Path) -> Path:
    """Random-initialised resnet18 weights saved as a state dict (no pretrained weights exist here)."""
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(0)
    torch.save(resnet18(weights=None).state_dict(), path)
    return path
