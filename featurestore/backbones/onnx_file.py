"""Backbones given as an ONNX file plus the input spec its producer documents.

The file is the weights: its SHA-256 enters the store fingerprint. The model must take one
float32 image batch and return one output of ``dim`` features per image (shaped ``(n, dim)``,
or e.g. ``(n, C, 1, 1)``, which the runtime flattens); onnxruntime runs it on every device.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path
from typing import NamedTuple

from featurestore.backbones.errors import WeightsCorrupt, WeightsMismatch, WeightsUnavailable
from featurestore.backbones.preprocessing import Preprocessing
from featurestore.backbones.registry import Backbone, Layer, backbone_names, get_backbone, register
from featurestore.backbones.weights import FileWeights
from featurestore.errors import InvalidName, InvalidOption, first_line
from featurestore.paths import check_name

LAYOUTS = ("NCHW", "NHWC")


#: how a backbone registered from an ONNX file names its architecture (``ONNX model <file>``)
ONNX_ARCHITECTURE = "ONNX model"


class _GraphIO(NamedTuple):
    input: str
    input_shape: list[int | None]  # None: a free (symbolic) dimension
    input_type: str  # the ONNX element type in lower case: "float", "uint8", ...
    output: str
    output_shape: list[int | None]

    @property
    def dim(self) -> int | None:
        """Features per image: the product of the output's non-batch dimensions, as the runtime
        flattens each image's output; None when one of them is not fixed in the graph."""
        rest = self.output_shape[1:]
        if not self.output_shape or None in rest:
            return None
        return math.prod(rest)


def _shown(dims: list[int | None]) -> str:
    """A shape as ``nx3x224x224``: ``n`` for the free batch axis, ``?`` for another free one."""
    return "x".join(("n" if i == 0 else "?") if d is None else str(d) for i, d in enumerate(dims))


def _graph_io(path: Path) -> _GraphIO:
    """The image input (name, shape, element type) and feature output (name, shape) of the graph."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - any parse failure is a corrupt file to the user
        raise WeightsCorrupt(f"{path}: not a readable ONNX model ({first_line(error)}); export it again") from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or not model.graph.output:
        raise WeightsCorrupt(f"{path}: expected one image input and one output, found {len(inputs)} inputs")
    input_shape, output_shape = (
        [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        for value in (inputs[0], model.graph.output[0]))
    input_type = onnx.TensorProto.DataType.Name(inputs[0].type.tensor_type.elem_type).lower()
    return _GraphIO(inputs[0].name, input_shape, input_type, model.graph.output[0].name, output_shape)


def _check_input(path: Path, graph: _GraphIO, layout: str, size: int) -> None:
    """The graph's input must take what the spec says the extractor feeds it: a float32 batch of
    any size of 3-channel ``size`` x ``size`` images in ``layout``; onnxruntime would fail mid-pass."""
    if graph.input_type != "float":
        raise WeightsMismatch(f"{path}: the model's input {graph.input!r} is {graph.input_type}, but the extractor "
                              "feeds float32 (normalised with the spec's mean and std); export the model with a "
                              "float32 input")
    fed = {"NCHW": [None, 3, size, size], "NHWC": [None, size, size, 3]}[layout]
    shape = graph.input_shape
    if shape and shape[0] is not None:
        raise WeightsMismatch(f"{path}: the model's input {graph.input!r} has a fixed batch size of {shape[0]}; "
                              f"export it with a dynamic batch axis (dynamic_axes={{{graph.input!r}: {{0: 'n'}}}})")
    if len(shape) == 4 and all(d is None or d == f for d, f in zip(shape[1:], fed[1:])):
        return
    raise WeightsMismatch(f"{path}: the model's input {graph.input!r} is {_shown(shape)}, but the spec feeds "
                          f"{layout} {_shown(fed)}; fix size and layout in the spec")


def _check_spec(name: str, size, resize, dim, mean, std) -> None:
    """Refuse spec values no extraction can run with, in one line, before any file is read."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    def three_numbers(value) -> bool:
        # JSON as Python reads it takes NaN and Infinity: every image would normalise to NaN.
        return (isinstance(value, (list, tuple)) and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))

    for key, value, ok, wanted in (
            ("size", size, whole(size), "a whole number of pixels >= 1"),
            ("resize", resize, resize is None or whole(resize), "a whole number of pixels >= size"),
            ("dim", dim, dim is None or whole(dim), "a whole number >= 1"),
            ("mean", mean, three_numbers(mean), "three finite numbers (R, G, B)"),
            ("std", std, three_numbers(std) and all(std), "three finite non-zero numbers (R, G, B)")):
        if not ok:
            raise InvalidOption(f"ONNX backbone {name!r}: {key} {value!r} must be {wanted}")


def onnx_backbone(name: str, path: str | os.PathLike[str], size: int = 224, resize: int | None = None,
                  interpolation: str = "bilinear", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                  layout: str = "NCHW", dim: int | None = None) -> Backbone:
    """Describe an ONNX image model: its file and the input it expects (float32, normalised).

    The graph's input shape is checked against ``layout`` and ``size`` here, so a spec that does
    not fit the model fails in one line before extraction starts.
    """
    _check_spec(name, size, resize, dim, mean, std)
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise WeightsUnavailable(f"ONNX model {path} does not exist; give the path of an exported .onnx file")
    if layout not in LAYOUTS:
        raise InvalidName(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    graph = _graph_io(path)
    _check_input(path, graph, layout, size)
    if dim and graph.dim and dim != graph.dim:
        raise WeightsMismatch(f"{path}: the spec says dim {dim}, but the model's output {graph.output!r} has "
                              f"{graph.dim} features; fix dim in the spec or leave it out")
    dim = dim or graph.dim
    if not dim:
        shape = _shown(graph.output_shape) or "of unknown shape"
        raise WeightsCorrupt(f"{path}: the model's output {graph.output!r} is {shape}, so its features per image "
                             "are not fixed in the graph; give dim in the spec")
    return Backbone(
        name=name,
        architecture=f"{ONNX_ARCHITECTURE} {path.name}",
        weights=FileWeights(path),
        preprocessing=Preprocessing(size=size, resize=resize or size, interpolation=interpolation, mean=mean, std=std),
        layers={graph.output: Layer(int(dim))},
        default_layer=graph.output,
        onnx_input={"name": graph.input, "layout": layout},
    )


#: the optional keys of a spec file: ``onnx_backbone``'s keyword arguments
SPEC_KEYS = frozenset(inspect.signature(onnx_backbone).parameters) - {"name", "path"}


def register_onnx(name: str, path: str | os.PathLike[str], **spec) -> Backbone:
    """Describe and register an ONNX backbone (see ``onnx_backbone`` for ``spec``).

    Registering a name again replaces an earlier ONNX entry (each task re-registers its specs),
    never a built-in backbone: a store named after one must hold that backbone's features.
    """
    check_name("model", name)
    if name in backbone_names() and not get_backbone(name).onnx_input:
        raise InvalidName(f"{name!r} is a built-in backbone; give the ONNX model another name (the spec's \"name\")")
    return register(onnx_backbone(name, path, **spec), replace=True)


def register_onnx_spec(spec_file: str | os.PathLike[str]) -> Backbone:
    """Register the ONNX backbone described by a JSON file ``{"name", "path", "size", ...}``.

    A relative ``path`` is taken relative to the JSON file.
    """
    spec_file = Path(spec_file)
    example = 'write JSON like {"name": "mynet", "path": "mynet.onnx", "size": 224}'
    try:
        text = spec_file.read_text()
    except OSError as error:
        raise WeightsUnavailable(f"{spec_file}: cannot read the ONNX backbone spec ({first_line(error)}); "
                                 "check the path") from None
    try:
        spec = json.loads(text)
        if not isinstance(spec, dict):
            raise ValueError(f"a JSON {type(spec).__name__}, not an object")
        name, path = spec.pop("name"), Path(spec.pop("path"))
    except (ValueError, KeyError, TypeError) as error:
        # A spec that is not what it should be is bad input, like any other bad option (exit 2).
        raise InvalidOption(f"{spec_file}: not a valid ONNX backbone spec ({first_line(error)}); {example}") from None
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise InvalidOption(f"{spec_file}: unknown ONNX spec key(s) {', '.join(unknown)}; "
                            f"the keys are name, path, {', '.join(sorted(SPEC_KEYS))}")
    return register_onnx(name, path if path.is_absolute() else spec_file.parent / path, **spec)
