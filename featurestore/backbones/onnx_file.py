"""Backbones given as an ONNX file plus the input spec its producer documents.

The file is the weights: its SHA-256 enters the store fingerprint. The model must take one
image batch and return one ``(n, dim)`` feature matrix; onnxruntime runs it on every device.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from featurestore.backbones.errors import WeightsCorrupt, WeightsUnavailable
from featurestore.backbones.preprocessing import Preprocessing
from featurestore.backbones.registry import Backbone, Layer, register
from featurestore.backbones.weights import FileWeights, first_line
from featurestore.errors import InvalidName

LAYOUTS = ("NCHW", "NHWC")


def _graph_io(path: Path) -> tuple[str, str, int | None]:
    """(input name, output name, static feature dim or None) read from the ONNX graph."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - any parse failure is a corrupt file to the user
        raise WeightsCorrupt(f"{path}: not a readable ONNX model ({first_line(error)}); export it again") from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or not model.graph.output:
        raise WeightsCorrupt(f"{path}: expected one image input and one output, found {len(inputs)} inputs")
    output = model.graph.output[0]
    dims = output.type.tensor_type.shape.dim
    dim = dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None
    return inputs[0].name, output.name, dim


def onnx_backbone(name: str, path: str | os.PathLike[str], size: int = 224, resize: int | None = None,
                  interpolation: str = "bilinear", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                  layout: str = "NCHW", dim: int | None = None) -> Backbone:
    """Describe an ONNX image model: its file and the input it expects (float32, normalised)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise WeightsUnavailable(f"ONNX model {path} does not exist; give the path of an exported .onnx file")
    if layout not in LAYOUTS:
        raise InvalidName(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    input_name, output_name, graph_dim = _graph_io(path)
    dim = dim or graph_dim
    if not dim:
        raise WeightsCorrupt(f"{path}: the output's last dimension is not fixed in the graph; pass dim=")
    return Backbone(
        name=name,
        architecture=f"ONNX model {path.name}",
        weights=FileWeights(path),
        preprocessing=Preprocessing(size=size, resize=resize or size, interpolation=interpolation, mean=mean, std=std),
        layers={output_name: Layer(int(dim))},
        default_layer=output_name,
        onnx_input={"name": input_name, "layout": layout},
    )


def register_onnx(name: str, path: str | os.PathLike[str], replace: bool = True, **spec) -> Backbone:
    """Describe and register an ONNX backbone (see ``onnx_backbone`` for ``spec``)."""
    return register(onnx_backbone(name, path, **spec), replace=replace)


def register_onnx_spec(spec_file: str | os.PathLike[str]) -> Backbone:
    """Register the ONNX backbone described by a JSON file ``{"name", "path", "size", ...}``.

    A relative ``path`` is taken relative to the JSON file.
    """
    spec_file = Path(spec_file)
    try:
        spec = json.loads(spec_file.read_text())
        name, path = spec.pop("name"), Path(spec.pop("path"))
    except (OSError, ValueError, KeyError, AttributeError) as error:
        raise WeightsUnavailable(
            f"{spec_file}: not a valid ONNX backbone spec ({first_line(error)}); "
            'write JSON like {"name": "mynet", "path": "mynet.onnx", "size": 224}'
        ) from None
    return register_onnx(name, path if path.is_absolute() else spec_file.parent / path, **spec)
