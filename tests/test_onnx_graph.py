"""Folding TensorFlow-style asymmetric ``Pad -> Conv`` into the ONNX ``Conv`` keeps outputs and drops the Pads."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from torch.nn import functional as F

from featurestore.extract.onnx_graph import fold_pads_into_convs


class _Padded(nn.Module):
    """A strided conv behind an asymmetric zero pad (foldable), then a reflect pad (not foldable)
    and a zero pad whose output also feeds an Add (not foldable: the Add needs the padded map)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.strided = nn.Conv2d(3, 8, 3, stride=2)
        self.reflected = nn.Conv2d(8, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        x = self.strided(F.pad(x, (0, 1, 0, 1)))
        x = self.reflected(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        padded = F.pad(x, (1, 1, 1, 1))
        return self.shared(padded) + padded


def _ops(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_only_zero_pads_feeding_one_conv_are_folded_and_outputs_do_not_change(tmp_path):
    path = tmp_path / "padded.onnx"
    x = np.random.default_rng(0).standard_normal((2, 3, 33, 32)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Padded().eval(), (torch.from_numpy(x),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    before = _run(path, x)
    assert _ops(path)["Pad"] == 3

    assert fold_pads_into_convs(path) == 1
    assert _ops(path)["Pad"] == 2
    np.testing.assert_allclose(_run(path, x), before, rtol=1e-5, atol=1e-5)
