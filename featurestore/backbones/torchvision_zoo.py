"""torchvision's ImageNet classifiers, with weights named by torchvision's weight enums.

Preprocessing is written out here (so listing backbones needs no torchvision import); a test
checks every entry against ``weights.transforms()``. The default layer ``avgpool`` is the
globally average-pooled penultimate representation; ``logits`` is the classifier output.
"""

from __future__ import annotations

from torch import nn

from featurestore.backbones.preprocessing import Preprocessing
from featurestore.backbones.registry import Backbone, Layer, register
from featurestore.backbones.weights import TorchvisionWeights


def _features_before(path: str, dim: int) -> Layer:
    """The ``dim``-wide layer feeding the head at dotted ``path`` (e.g. ``classifier.2``): a cut
    that replaces that head with Identity."""

    def cut(model: nn.Module) -> nn.Module:
        parent_path, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        # Module.__setattr__ also replaces numbered children of an nn.Sequential.
        setattr(parent, child, nn.Identity())
        return model

    return Layer(dim, cut, head=path)


def _vgg_pooled(model: nn.Module) -> nn.Module:
    # VGG's penultimate conv maps are 7x7x512; pool them globally instead of flattening into fc6.
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Identity()
    return model


def _vgg_fc7(model: nn.Module) -> nn.Module:
    model.classifier = model.classifier[:-1]
    return model


def _builder(name: str, **kwargs):
    def build() -> nn.Module:
        from torchvision import models

        return getattr(models, name)(weights=None, **kwargs)

    return build


# name: (weights enum, resize, crop, interpolation, {layer: Layer}, builder kwargs)
_ENTRIES = {
    "resnet18": ("ResNet18_Weights.IMAGENET1K_V1", 256, 224, "bilinear", {"avgpool": _features_before("fc", 512)}, {}),
    "resnet50": ("ResNet50_Weights.IMAGENET1K_V2", 232, 224, "bilinear", {"avgpool": _features_before("fc", 2048)}, {}),
    "vgg16": ("VGG16_Weights.IMAGENET1K_V1", 256, 224, "bilinear",
              {"avgpool": Layer(512, _vgg_pooled, head="classifier"), "fc7": Layer(4096, _vgg_fc7, head="classifier.6")},
              {}),
    "vgg19": ("VGG19_Weights.IMAGENET1K_V1", 256, 224, "bilinear",
              {"avgpool": Layer(512, _vgg_pooled, head="classifier"), "fc7": Layer(4096, _vgg_fc7, head="classifier.6")},
              {}),
    # torchvision builds the pretrained Inception with transform_input=True; the weights need it.
    "inception_v3": ("Inception_V3_Weights.IMAGENET1K_V1", 342, 299, "bilinear",
                     {"avgpool": _features_before("fc", 2048)},
                     {"aux_logits": True, "transform_input": True, "init_weights": False}),
    "mobilenet_v3_large": ("MobileNet_V3_Large_Weights.IMAGENET1K_V2", 232, 224, "bilinear",
                           {"avgpool": _features_before("classifier", 960)}, {}),
    "efficientnet_b0": ("EfficientNet_B0_Weights.IMAGENET1K_V1", 256, 224, "bicubic",
                        {"avgpool": _features_before("classifier", 1280)}, {}),
    "convnext_tiny": ("ConvNeXt_Tiny_Weights.IMAGENET1K_V1", 236, 224, "bilinear",
                      {"avgpool": _features_before("classifier.2", 768)}, {}),
    # ViT has no pooling: its penultimate representation is the class token.
    "vit_b_16": ("ViT_B_16_Weights.IMAGENET1K_V1", 256, 224, "bilinear", {"avgpool": _features_before("heads", 768)}, {}),
}

for _name, (_enum, _resize, _crop, _interp, _layers, _kwargs) in _ENTRIES.items():
    register(Backbone(
        name=_name,
        architecture=f"torchvision.models.{_name}",
        weights=TorchvisionWeights(_enum),
        preprocessing=Preprocessing(size=_crop, resize=_resize, interpolation=_interp),
        layers={**_layers, "logits": Layer(1000)},
        build=_builder(_name, **_kwargs),
    ))
