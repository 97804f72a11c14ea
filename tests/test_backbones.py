"""The backbone registry: entries, preprocessing, feature dims, weights errors, CLI listing."""

from __future__ import annotations

import json
import os
import pickle
import warnings
import re

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from featurestore.backbones import (
    Preprocessing,
    UnknownBackbone,
    UnknownLayer,
    WeightsCorrupt,
    WeightsMismatch,
    WeightsUnavailable,
    backbone_names,
    get_backbone,
)
from featurestore.backbones.weights import PackageWeights, TorchvisionWeights
from featurestore.cli import extract_commands
from featurestore.errors import FeatureStoreError, InvalidName, InvalidOption
from featurestore.ingest.checksums import digest_file

BUILTIN_TORCHVISION = ["resnet18", "resnet50", "vgg16", "vgg19", "inception_v3", "mobilenet_v3_large",
                       "efficientnet_b0", "convnext_tiny", "vit_b_16"]
LITE = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
# Every registered entry, so that a backbone added to the registry is tested with no test of its own.
TORCHVISION = [name for name in backbone_names() if isinstance(get_backbone(name).weights, TorchvisionWeights)]
TORCH = [name for name in backbone_names() if get_backbone(name).is_torch]


def test_registry_has_the_builtin_backbones():
    assert set(LITE) <= set(TORCH) and set(BUILTIN_TORCHVISION) <= set(TORCHVISION)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(UnknownBackbone) as caught:
        get_backbone("resnet9000")
    message = str(caught.value)
    assert "resnet9000" in message and "efficientnet_lite0" in message and "vit_b_16" in message
    assert "\n" not in message


def test_unknown_layer_lists_the_layers():
    with pytest.raises(UnknownLayer, match="avgpool, fc7, logits"):
        get_backbone("vgg16").layer("conv5")


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_preprocessing_is_the_weights_own(name):
    from torchvision.models import get_weight

    backbone = get_backbone(name)
    transform = get_weight(backbone.weights.enum).transforms()
    prep = backbone.preprocessing
    assert (prep.size, prep.resize) == (transform.crop_size[0], transform.resize_size[0])
    assert prep.interpolation == transform.interpolation.value
    assert prep.mean == tuple(transform.mean) and prep.std == tuple(transform.std)


@pytest.mark.parametrize("name", TORCH)
def test_every_layer_has_the_declared_dim(name):
    # Built on the meta device: shapes propagate without allocating or computing anything.
    backbone = get_backbone(name)
    size = backbone.preprocessing.size
    for layer in backbone.layers.values():
        with torch.device("meta"):
            model = backbone.build()
            model = layer.cut(model) if layer.cut else model
            out = model.eval()(torch.empty(2, 3, size, size))
        assert tuple(out.flatten(1).shape) == (2, layer.dim)


def test_preprocessing_matches_torchvision_pixel_for_pixel():
    import skimage.data
    from PIL import Image
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    photo = skimage.data.chelsea()
    for prep in (Preprocessing(224, 256, "bicubic"), Preprocessing(299, 342, "bilinear")):
        reference = transforms.Compose([transforms.Resize(prep.resize, InterpolationMode(prep.interpolation)),
                                        transforms.CenterCrop(prep.size)])(Image.fromarray(photo))
        np.testing.assert_array_equal(prep.apply(photo), np.asarray(reference))
        # the readers hand over the decoded Pillow image itself: the same bytes
        np.testing.assert_array_equal(prep.apply(Image.fromarray(photo)), np.asarray(reference))
        normalised = prep.normalize(prep.apply(photo)[None])[0]
        np.testing.assert_allclose(normalised, prep.torchvision_transform()(Image.fromarray(photo)).numpy(), atol=1e-5)


def test_greyscale_preprocessing_gives_the_bytes_of_its_rgb_copy():
    import skimage.data
    from PIL import Image

    photo = skimage.data.camera()  # a real greyscale photograph
    for prep in (Preprocessing(224, 256, "bicubic"), Preprocessing(260, 292, "bicubic"), Preprocessing(299, 342)):
        crop = prep.apply(photo[:300, 40:500])
        assert crop.shape == (prep.size, prep.size, 3)
        np.testing.assert_array_equal(crop, prep.apply(np.repeat(photo[:300, 40:500, None], 3, axis=2)))
        np.testing.assert_array_equal(crop, prep.apply(Image.fromarray(photo[:300, 40:500]).convert("RGB")))


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_tensor_preprocessing_stays_within_two_levels_of_pillow(interpolation):
    import skimage.data

    # Upsampled small greyscale (the Fashion-MNIST case: 28 px, sharp edges that make bicubic
    # overshoot) and downsampled colour photos.
    small = skimage.data.camera()[::18, ::18][:28, :28]
    cases = [np.stack([small, small.T, 255 - small]), skimage.data.chelsea()[None], skimage.data.coffee()[None]]
    for prep in (Preprocessing(224, 256, interpolation), Preprocessing(224, 232, interpolation)):
        for images in cases:
            reference = np.stack([prep.apply(image) for image in images]).astype(int)
            got = prep.apply_tensor(torch.from_numpy(images)).permute(0, 2, 3, 1).numpy()
            assert got.shape == reference.shape
            difference = np.abs(got - reference)
            assert difference.max() <= 2 and difference.mean() < 0.02, (prep, images.shape, difference.mean())
    with pytest.raises(FeatureStoreError, match="interpolation 'nearest' has no exact torch version"):
        Preprocessing(224, 256, "nearest").apply_tensor(torch.zeros((1, 28, 28), dtype=torch.uint8))


def test_package_weights_are_verified_by_sha256():
    source = get_backbone("efficientnet_lite0").weights
    resolved = source.resolve()
    assert resolved.sha256 == source.sha256 == digest_file(resolved.path)
    wrong = PackageWeights(source.package, source.filename, "0" * 64)
    with pytest.raises(WeightsCorrupt, match="efficientnet-lite0-57934424.pth"):
        wrong.resolve()


def test_missing_torchvision_weights_say_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    source = get_backbone("resnet50").weights
    assert isinstance(source, TorchvisionWeights) and not source.available_offline
    with pytest.raises(WeightsUnavailable) as caught:
        source.resolve(download=False)
    message = str(caught.value)
    assert "--weights FILE" in message and str(tmp_path) in message and "resnet50-11ad3fa6.pth" in message


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(WeightsUnavailable, match="nothere.pth"):
        get_backbone("resnet18").weights.resolve(tmp_path / "nothere.pth")


def test_corrupt_weights_file_is_named(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(get_backbone("efficientnet_lite0").weights.local_path().read_bytes()[:5000])
    resolved = get_backbone("resnet18").weights.resolve(path)
    with pytest.raises(WeightsCorrupt) as caught:
        get_backbone("resnet18").load_torch(resolved)
    assert "broken.pth" in str(caught.value) and "\n" not in str(caught.value)
    path.write_bytes(b"no pickle at all")
    with pytest.raises(WeightsCorrupt) as caught:
        get_backbone("resnet18").load_torch(get_backbone("resnet18").weights.resolve(path))
    assert str(caught.value) == (f"{path}: not a readable PyTorch state dict (the safe unpickler stopped at: "
                                 "Unsupported operand 110); replace the file or pass another one with --weights")


class _Payload:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_weights_are_loaded_without_arbitrary_pickle(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"fc.weight": _Payload()}, handle)
    resolved = get_backbone("resnet18").weights.resolve(path)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(WeightsCorrupt, match="evil.pth") as caught:
            get_backbone("resnet18").load_torch(resolved)
    assert "arbitrary code ran" not in capsys.readouterr().out
    # torch's note on the pickle protocol was printed before the one line saying why the file is refused
    assert not [w for w in shown if "pickle protocol" in str(w.message)]
    assert_refused_for_safety(str(caught.value), "builtins.print")


def test_a_whole_pickled_model_is_refused_without_torchs_advice_to_unpickle_it(tmp_path):
    # torch's own message says to retry with weights_only=False, which runs the file's code.
    path = tmp_path / "whole-model.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    resolved = get_backbone("resnet18").weights.resolve(path)
    with pytest.raises(WeightsCorrupt) as caught:
        get_backbone("resnet18").load_torch(resolved)
    assert_refused_for_safety(str(caught.value), "torch.nn.modules.linear.Linear")
    assert str(caught.value).startswith(f"{path}: ")


def test_a_pickle_calling_a_blocked_module_is_refused_for_safety(tmp_path):
    # torch words a global of a blocked module (os, subprocess) otherwise: the file was called
    # "not a readable PyTorch state dict (the safe unpickler stopped at: an unknown record)".
    class RunsAShell:
        def __reduce__(self):
            return os.system, ("echo arbitrary code ran",)

    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": RunsAShell()}, path)
    resolved = get_backbone("resnet18").weights.resolve(path)
    with pytest.raises(WeightsCorrupt) as caught:
        get_backbone("resnet18").load_torch(resolved)
    assert_refused_for_safety(str(caught.value), f"{os.name}.system")


def assert_refused_for_safety(message: str, name: str) -> None:
    assert f"holds Python objects beyond tensors ({name}), refused for safety" in message
    assert "torch.save(model.state_dict(), FILE)" in message
    assert "weights_only" not in message and "safe_globals" not in message and "\n" not in message


def test_weights_of_another_architecture_are_rejected():
    lite = get_backbone("efficientnet_lite0").weights.resolve()
    with pytest.raises(WeightsMismatch) as caught:
        get_backbone("resnet18").load_torch(lite)
    message = str(caught.value)
    assert "efficientnet-lite0-57934424.pth" in message and "resnet18" in message and "\n" not in message
    lite2 = get_backbone("efficientnet_lite2").weights.resolve()
    with pytest.raises(WeightsMismatch):
        get_backbone("efficientnet_lite0").load_torch(lite2)


def test_weights_that_do_not_fit_show_missing_and_unexpected_keys(tmp_path):
    from test_extract_support import save_random_resnet18

    state = torch.load(save_random_resnet18(tmp_path / "r18.pth"), weights_only=True)
    torch.save({f"module.{key}": value for key, value in state.items()}, tmp_path / "ddp.pth")  # saved from DDP
    backbone = get_backbone("resnet18")
    with pytest.raises(WeightsMismatch) as caught:
        backbone.load_torch(backbone.weights.resolve(tmp_path / "ddp.pth"))
    message = str(caught.value)
    assert 'Missing key(s) in state_dict: "conv1.weight", "bn1.weight", "bn1.bias", ... (' in message
    assert 'Unexpected key(s) in state_dict: "module.conv1.weight"' in message and "\n" not in message
    with pytest.raises(WeightsUnavailable, match=f"--weights {tmp_path} is a directory; pass the weights file itself"):
        backbone.weights.resolve(tmp_path)


def test_cli_lists_backbones_as_json_and_table():
    app = typer.Typer()
    extract_commands.register(app)
    result = CliRunner().invoke(app, ["backbones", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["efficientnet_lite0"]["dim"] == 1280 and rows["efficientnet_lite0"]["offline"] is True
    assert rows["efficientnet_lite2"]["input"] == "260x260"
    assert rows["resnet50"]["dim"] == 2048 and rows["resnet50"]["weights"].startswith("torchvision:")
    table = CliRunner().invoke(app, ["backbones"])
    assert table.exit_code == 0 and "vit_b_16" in table.output and "offline" in table.output
    assert CliRunner().invoke(app, ["backbones", "--help"]).exit_code == 0


def test_errors_are_feature_store_errors():
    for error in (UnknownBackbone, UnknownLayer, WeightsCorrupt, WeightsMismatch, WeightsUnavailable):
        assert issubclass(error, FeatureStoreError)


class _TinyNet(torch.nn.Module):
    """Two strided convolutions, global-average-pooled: a 32-dim ONNX backbone for 64x64 images."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 16, 3, stride=2)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, stride=2)

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """The tiny net exported with a dynamic batch axis (tiny.onnx) and with the batch fixed at 2 (fixed.onnx)."""
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = _TinyNet().eval()
    example = (torch.zeros(2, 3, 64, 64),)
    torch.onnx.export(model, example, str(folder / "tiny.onnx"), dynamo=False, input_names=["image"],
                      output_names=["features"], dynamic_axes={"image": {0: "n"}, "features": {0: "n"}})
    torch.onnx.export(model, example, str(folder / "fixed.onnx"), dynamo=False, input_names=["image"],
                      output_names=["features"])
    return folder


@pytest.mark.parametrize("spec, error, message", [
    ({"size": 32}, WeightsMismatch, "input 'image' is nx3x64x64, but the spec feeds NCHW nx3x32x32; fix size"),
    ({"size": 64, "layout": "NHWC"}, WeightsMismatch, "is nx3x64x64, but the spec feeds NHWC nx64x64x3"),
    ({"size": 64, "path": "fixed.onnx"}, WeightsMismatch, "fixed batch size of 2; export it with a dynamic batch"),
    ({"size": 64, "sise": 99}, InvalidOption, "unknown ONNX spec key(s) sise; the keys are name, path, dim,"),
    ({"size": "big"}, InvalidOption, "ONNX backbone 'tinynet': size 'big' must be a whole number of pixels"),
    ({"size": -5}, InvalidOption, "size -5 must be a whole number of pixels >= 1"),
    ({"size": 64, "std": [0.2, 0, 0.2]}, InvalidOption, "std [0.2, 0, 0.2] must be three finite non-zero numbers"),
    ({"size": 64, "mean": [float("nan"), 0, 0]}, InvalidOption, "mean [nan, 0, 0] must be three finite numbers"),
    ({"size": 64, "name": "efficientnet_lite0"}, InvalidName, "'efficientnet_lite0' is a built-in backbone"),
    ({"size": 64, "name": "../evil"}, InvalidName, "invalid model name '../evil'"),
    ([1, 2], InvalidOption, "not a valid ONNX backbone spec (ValueError: a JSON list, not an object)"),
    ({"size": 64, "dim": 999}, WeightsMismatch, "the spec says dim 999, but the model's output 'features' has 32 "
                                                "features; fix dim in the spec or leave it out"),
])
def test_onnx_spec_that_does_not_fit_the_model_is_refused_in_one_line(tiny_onnx, tmp_path, spec, error, message):
    from featurestore.backbones import register_onnx_spec

    if isinstance(spec, dict):
        spec = {"name": "tinynet", "path": "tiny.onnx", **spec}
    spec_file = tiny_onnx / "spec.json"
    spec_file.write_text(json.dumps(spec))
    with pytest.raises(error) as caught:
        register_onnx_spec(spec_file)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert get_backbone("efficientnet_lite0").dim == 1280  # a built-in is never replaced


def test_onnx_spec_registers_again_under_its_name(tiny_onnx):
    from featurestore.backbones import register_onnx_spec

    spec_file = tiny_onnx / "good.json"
    spec_file.write_text(json.dumps({"name": "tinynet2", "path": "tiny.onnx", "size": 64, "resize": 72}))
    first = register_onnx_spec(spec_file)
    again = register_onnx_spec(spec_file)  # every task of a flow registers the specs it was given
    assert (first.dim, again.dim, again.preprocessing.resize, again.default_layer) == (32, 32, 72, "features")


@pytest.mark.parametrize("name, head", [("resnet18", "fc"), ("efficientnet_lite0", "_fc"), ("convnext_tiny", "classifier.2")])
def test_a_fine_tuned_or_missing_head_loads_for_features_but_not_for_logits(tmp_path, name, head):
    backbone = get_backbone(name)
    layer = "avgpool"
    torch.manual_seed(0)
    state = backbone.build().state_dict()  # random weights: no pretrained ones needed to check the loading
    tuned = dict(state, **{f"{head}.weight": torch.randn(10, state[f"{head}.weight"].shape[1]),
                           f"{head}.bias": torch.zeros(10)})  # fine-tuned on 10 classes
    headless = {key: value for key, value in state.items() if not key.startswith(f"{head}.")}
    image = torch.rand(1, 3, backbone.preprocessing.size, backbone.preprocessing.size)
    features = []
    for variant, weights in (("tuned", tuned), ("headless", headless)):
        torch.save(weights, tmp_path / f"{variant}.pth")
        model = backbone.load_torch(backbone.weights.resolve(tmp_path / f"{variant}.pth"), layer)
        with torch.no_grad():
            features.append(model(image))
    assert features[0].shape == (1, backbone.layers[layer].dim)
    torch.testing.assert_close(features[0], features[1])  # the head is not used
    for variant in ("tuned", "headless"):
        with pytest.raises(WeightsMismatch, match=rf"their classifier head \({re.escape(head)}\) is not {name}'s, which "
                                                  r"layer 'logits' needs; use --layer avgpool for features"):
            backbone.load_torch(backbone.weights.resolve(tmp_path / f"{variant}.pth"), "logits")
    broken = dict(tuned)
    broken.pop(next(key for key in state if not key.startswith(head)))  # a body key missing: still refused
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(WeightsMismatch, match="Missing key"):
        backbone.load_torch(backbone.weights.resolve(tmp_path / "broken.pth"), layer)
