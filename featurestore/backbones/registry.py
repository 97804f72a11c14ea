"""The backbone registry: one ``Backbone`` entry per pretrained model.

An entry knows its architecture (a builder), where its weights come from and their checksum,
the preprocessing those weights expect, and the feature layers it can emit with their
dimensions. Adding a backbone is one entry: a line in ``torchvision_zoo._ENTRIES``, or a
``register(Backbone(...))`` call in a module ``_register_builtins`` imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from featurestore.backbones.errors import UnknownBackbone, UnknownLayer, WeightsMismatch
from featurestore.backbones.preprocessing import Preprocessing
from featurestore.backbones.weights import ResolvedWeights, WeightsSource, load_state_dict
from featurestore.registry import Registry

DEFAULT_LAYER = "avgpool"


@dataclass(frozen=True)
class Layer:
    """One feature layer: its width and how to cut the classifier down to it."""

    dim: int
    # Turns the full classifier (after its weights are loaded) into a module that returns
    # (n, dim) features; None means the classifier's own output (the logits).
    cut: Callable | None = None
    # Dotted path of the classifier head the cut removes. Its weights are never used, so weights
    # whose head has another shape (fine-tuned on 10 classes, say) or none at all still load.
    head: str | None = None


@dataclass(frozen=True)
class Backbone:
    """A registered pretrained backbone."""

    name: str
    architecture: str
    weights: WeightsSource
    preprocessing: Preprocessing
    layers: Mapping[str, Layer]
    build: Callable | None = None  # random-initialised torch module; None for ONNX-only entries
    default_layer: str = DEFAULT_LAYER
    onnx_input: Mapping = field(default_factory=dict)  # ONNX-file entries: input name, layout, output

    @property
    def dim(self) -> int:
        """Feature dimension of the default layer."""
        return self.layers[self.default_layer].dim

    @property
    def is_torch(self) -> bool:
        """Whether the backbone is a PyTorch module (else an ONNX file run by onnxruntime)."""
        return self.build is not None

    def layer(self, name: str | None = None) -> str:
        """Validate a layer name (``None`` -> the default layer)."""
        chosen = name or self.default_layer
        if chosen not in self.layers:
            raise UnknownLayer(f"backbone {self.name!r} has no layer {chosen!r}; choose one of {', '.join(self.layers)}")
        return chosen

    def store_preprocessing(self, layer: str | None = None) -> dict:
        """Preprocessing plus layer, as recorded in the store fingerprint."""
        return dict(self.preprocessing.as_dict(), layer=self.layer(layer))

    def load_torch(self, weights: ResolvedWeights, layer: str | None = None):
        """Build the architecture, load ``weights`` strictly (but for the head ``layer`` cuts off),
        and cut it to ``layer`` (eval mode, CPU)."""
        import torch

        if self.build is None:
            raise UnknownLayer(f"backbone {self.name!r} is an ONNX model; it has no PyTorch module")
        layer = self.layer(layer)
        chosen = self.layers[layer]
        state = load_state_dict(weights.path)
        # Building on the meta device skips the random initialisation the weights overwrite anyway.
        with torch.device("meta"):
            model = self.build()
        try:
            _load_except_head(model, state, chosen.head)
        except (RuntimeError, KeyError, ValueError) as error:
            raise WeightsMismatch(f"{weights.path}: weights do not fit {self.name} ({_mismatch(error)}); "
                                  f"{self._misfit_advice(state, layer)}") from None
        model = chosen.cut(model) if chosen.cut is not None else model
        # A state dict saved in half precision would otherwise leave the model half precision.
        return model.float().eval()

    def _misfit_advice(self, state: Mapping, layer: str) -> str:
        """What to do about weights that do not fit: for a layer that needs the classifier head
        (``logits``) and weights whose head alone differs (fine-tuned, or saved without it), use a
        feature layer; else, weights of this architecture."""
        import torch

        head = self.layers[self.default_layer].head
        if self.layers[layer].head is None and head is not None:
            with torch.device("meta"):
                try:
                    _load_except_head(self.build(), state, head)
                except (RuntimeError, KeyError, ValueError):
                    pass
                else:
                    return (f"their classifier head ({head}) is not {self.name}'s, which layer "
                            f"{layer!r} needs; use --layer {self.default_layer} for features")
        return f"pass weights saved from {self.architecture}"


def _load_except_head(model, state: Mapping, head: str | None) -> None:
    """Load ``state`` into ``model``: every key must fit, except those under ``head`` (a head the
    layer cuts off), which may have any shape or be absent. Raises torch's own error otherwise."""
    if head is None:
        model.load_state_dict(state, strict=True, assign=True)
        return

    def under_head(key: str) -> bool:
        return key == head or key.startswith(f"{head}.")

    result = model.load_state_dict({k: v for k, v in state.items() if not under_head(k)}, strict=False, assign=True)
    if result.unexpected_keys or any(not under_head(key) for key in result.missing_keys):
        # torch's strict message names every missing, unexpected and misfit key at once.
        model.load_state_dict(state, strict=True, assign=True)


def _mismatch(error: BaseException) -> str:
    """What does not fit, from torch's ``load_state_dict`` error, in one line: each detail line
    (missing keys, unexpected keys, size mismatches) with long key lists shortened to their first
    three, so that both the missing and the unexpected keys show."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    parts = []
    for line in lines[1:] or lines:
        label, _, listed = line.partition(": ")
        keys = listed.rstrip(". ").split(", ")
        if label.endswith("key(s) in state_dict") and len(keys) > 3:
            line = f"{label}: {', '.join(keys[:3])}, ... ({len(keys)} in all)"
        parts.append(line)
    detail = "; ".join(parts) or type(error).__name__
    return detail if len(detail) <= 400 else detail[:397] + "..."


def _register_builtins() -> None:
    # Imported on first lookup: each module registers its entries as it is imported.
    from featurestore.backbones import efficientnet_lite, torchvision_zoo  # noqa: F401


_REGISTRY: Registry[Backbone] = Registry(
    "backbone", error=UnknownBackbone, populate=_register_builtins,
    hint=" (or register an ONNX model with --onnx-spec FILE)",
)


def register(backbone: Backbone, replace: bool = False) -> Backbone:
    """Add ``backbone`` to the registry (``replace=True`` to redefine a name)."""
    # Built-ins first, so a user's entry named like one replaces it instead of being clobbered later.
    _REGISTRY.names()
    return _REGISTRY.register(backbone.name, backbone, replace=replace)


def get_backbone(name: str) -> Backbone:
    """The registered backbone called ``name``; ``UnknownBackbone`` lists the known ones."""
    return _REGISTRY.get(name)


def backbone_names() -> list[str]:
    """Names of all registered backbones, in registration order."""
    return _REGISTRY.names()
