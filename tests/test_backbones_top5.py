"""Proof that weights and preprocessing are right: real photos land in the right ImageNet class.

Every backbone whose weights are on this machine runs through the whole extract pipeline
(decode, its own crop, onnxruntime, store) at the ``logits`` layer; the stored logits must put a
correct class in the top 5 and agree with the torchvision reference path (PIL + torchvision
transforms + eager fp32 PyTorch) to cosine >= 0.999 per image.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from test_extract_support import write_photo_dataset

import featurestore
from featurestore.backbones import backbone_names, get_backbone
from featurestore.datasets.manifest import load_manifest
from featurestore.extract import extract

# ImageNet classes that are genuinely right for each photo.
EXPECTED = {
    "chelsea": {281, 282, 283, 284, 285},  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee": {967, 968, 504},  # espresso, cup, coffee mug
    "china": {698, 663, 442},  # palace, monastery, bell cote (a Chinese temple)
}
OFFLINE = [name for name in backbone_names() if get_backbone(name).is_torch and get_backbone(name).weights.available_offline]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("top5")
    write_photo_dataset(root, "photos", copies=1, size=None)
    return root


def reference_logits(name: str, photos: list[np.ndarray]) -> np.ndarray:
    backbone = get_backbone(name)
    model = backbone.load_torch(backbone.weights.resolve(), "logits")
    transform = backbone.preprocessing.torchvision_transform()
    batch = torch.stack([transform(Image.fromarray(p)) for p in photos])
    with torch.inference_mode():
        return model(batch).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("name", OFFLINE)
def test_real_photos_in_top5_and_fast_path_matches_reference(root, name):
    (result,) = extract("photos", [name], root, layer="logits", batch_size=8, progress=False)
    assert result.status == "extracted" and result.runtime == "onnxruntime"
    arrays = featurestore.load_arrays("photos", f"{name}.logits", root=root)
    by_class = {arrays.class_names[label]: i for i, label in enumerate(arrays.labels)}
    for photo, expected in EXPECTED.items():
        top5 = set(np.argsort(arrays.features[by_class[photo]])[-5:].tolist())
        assert top5 & expected, f"{name}: {photo} top-5 {sorted(top5)} misses {sorted(expected)}"
    # The reference decodes the very same files (the dataset holds JPEGs of the photos).
    manifest = load_manifest("photos", root)
    order = sorted(by_class)
    reference = reference_logits(name, [manifest.read_rgb(by_class[c]) for c in order])
    fast = arrays.features[[by_class[c] for c in order]]
    assert cosine(fast, reference).min() >= 0.999
    # Every "same" padding ended up inside a Conv: a separate Pad costs ~30% of CPU throughput.
    (exported,) = (root / "cache" / "onnx").glob(f"{name}-logits-*.onnx")
    assert "Pad" not in {node.op_type for node in onnx.load(str(exported)).graph.node}
