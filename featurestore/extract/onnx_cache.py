"""Export a torch backbone to ONNX once, cached on disk by everything that shapes the graph.

The exported graph takes the ``uint8 (n, S, S, 3)`` crops the reader produces and does the
cast, layout change and normalisation itself, so onnxruntime fuses them with the first layers
and no float copy of the batch is ever made in Python.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from featurestore.backbones import Backbone, ResolvedWeights
from featurestore.extract.onnx_graph import fold_pads_into_convs
from featurestore.files import written_aside
from featurestore.paths import resolve_root

INPUT_NAME, OUTPUT_NAME = "pixels", "features"
OPSET = 17
# Bump when the export code changes the graph, so stale cached files are not reused.
EXPORT_VERSION = 3


def cache_dir(root=None) -> Path:
    """Directory of exported ONNX models: ``<root>/cache/onnx``."""
    return resolve_root(root) / "cache" / "onnx"


def cache_key(backbone: Backbone, weights: ResolvedWeights, layer: str) -> str:
    """Name of the cached file: backbone, layer, weights hash and preprocessing (input size, mean, std)."""
    shape = json.dumps([EXPORT_VERSION, OPSET, backbone.store_preprocessing(layer)], sort_keys=True)
    digest = hashlib.sha256(f"{weights.sha256}:{shape}".encode()).hexdigest()[:16]
    return f"{backbone.name}-{layer}-{backbone.preprocessing.size}px-{digest}.onnx"


def exported_onnx(backbone: Backbone, weights: ResolvedWeights, layer: str, root=None) -> Path:
    """Path of the ONNX export of (backbone, weights, layer), exporting it on first use."""
    import torch

    from featurestore.extract.feature_net import FeatureNet

    path = cache_dir(root) / cache_key(backbone, weights, layer)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    net = FeatureNet(backbone.load_torch(weights, layer), backbone.preprocessing).eval()
    size = backbone.preprocessing.size
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    # A concurrent reader never sees half a model, nor does another process exporting it too; and a
    # crash must not leave a short file under the cache name, which every later run would reuse.
    with written_aside(path, unique=True, fsync=True) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), tmp, dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "n"}, OUTPUT_NAME: {0: "n"}})
        fold_pads_into_convs(tmp)
    return path
