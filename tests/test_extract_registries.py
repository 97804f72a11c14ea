"""Runtimes and readers are registry entries: what one can do is read from its entry, not from its name."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from featurestore.backbones import get_backbone
from featurestore.errors import InvalidName, InvalidOption
from featurestore.extract.reader import READERS, open_reader
from featurestore.extract.runtimes import (RUNTIMES, RuntimeRequest, RuntimeSpec, build_runtime, check_options,
                                           effective_precision)


@pytest.fixture
def halves(monkeypatch):
    """A runtime registered for one test only: fp32 or fp16 (fp16 on a GPU by default), torch backbones
    only, cropping on its device; its build returns the request it is given."""
    monkeypatch.setattr(RUNTIMES, "_entries", dict(RUNTIMES._entries))
    return RUNTIMES.register("halves", RuntimeSpec(lambda request: request, precisions=("fp32", "fp16"),
                                                   gpu_precision="fp16", runs_onnx_files=False, crops_on_device=True))


def test_a_runtimes_precisions_backbones_and_device_crops_come_from_its_entry(halves):
    # Before, all three were tests of the name "torch": any other runtime was fp32-only,
    # ran ONNX files and could not crop on the device.
    lite0 = get_backbone("efficientnet_lite0")
    check_options([lite0], "cpu", "halves", "fp16")
    with pytest.raises(InvalidOption) as caught:
        check_options([lite0], "cpu", "halves", "bf16")
    assert str(caught.value) == ("--precision bf16: efficientnet_lite0 runs on halves here, which computes in fp32 "
                                 "or fp16 only; use --runtime torch or leave --precision out")
    assert effective_precision(lite0, "cuda:0", "halves") == "fp16"
    assert effective_precision(lite0, "cpu", "halves") == "fp32"
    built = build_runtime(RuntimeRequest(lite0, None, lite0.default_layer, device="cuda"), "halves")
    assert built.precision == "fp16"

    onnx_file = SimpleNamespace(name="pool4d", is_torch=False)
    with pytest.raises(InvalidName, match="^backbone 'pool4d' is an ONNX file; run it with runtime 'onnxruntime'$"):
        check_options([onnx_file], "cpu", "halves")

    preprocessings = [lite0.preprocessing]
    folder = SimpleNamespace(is_one_array=lambda: False, directory=Path("photos"))  # a manifest of image files
    assert open_reader("device-decode", "cpu", folder, ["halves"], preprocessings).name == "device-decode"
    with pytest.raises(InvalidName, match="needs the torch runtime .* pass --runtime torch \\(onnxruntime is the "
                                          "default on CPU\\); choose reader 'threads' or 'processes'$"):
        open_reader("device-decode", "cpu", folder, ["halves", "onnxruntime"], preprocessings)


def test_unknown_runtimes_and_readers_are_refused_by_their_registries(halves):
    lite0 = get_backbone("efficientnet_lite0")
    with pytest.raises(InvalidName, match="^unknown runtime 'fibres': choose one of halves, onnxruntime, torch$"):
        check_options([lite0], "cpu", "fibres")
    assert "halves" not in READERS
    with pytest.raises(InvalidName, match="^unknown reader 'halves': choose one of device-decode, device-resize, "
                                          "processes, threads$"):
        open_reader("halves", "cpu", None, ["torch"], [lite0.preprocessing])
