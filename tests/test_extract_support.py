"""Shared helpers for the backbone and extract tests (tiny real-photo datasets written per the manifest
contract, small ONNX graphs), and the tests of how extraction treats such graphs and its export cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import featurestore
from featurestore.backbones import WeightsCorrupt, WeightsMismatch, onnx_backbone, register, register_onnx_spec
from featurestore.datasets.manifest import load_manifest, write_manifest
from featurestore.extract import extract
from featurestore.paths import dataset_dir


def real_photos() -> dict[str, np.ndarray]:
    """Real RGB photographs shipped with scikit-image and scikit-learn."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    samples = load_sample_images()
    return {"chelsea": skimage.data.chelsea(), "coffee": skimage.data.coffee(),
            "china": samples.images[0], "flower": samples.images[1], "astronaut": skimage.data.astronaut()}


def write_photo_dataset(root: Path, name: str = "photos", copies: int = 2, corrupt: int = 0,
                        size: int | None = 96, other_formats: bool = False) -> Path:
    """A dataset of real photos (each in a few crops, as JPEG), with ``corrupt`` undecodable files.

    ``size`` shrinks the photos so the tests stay fast; ``None`` keeps them whole.
    ``other_formats`` adds the first photo's first crop as a PNG and as a CMYK JPEG.
    """
    directory = dataset_dir(name, root)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    photos = real_photos()
    classes = sorted(photos)
    records = []
    for label, cls in enumerate(classes):
        image = Image.fromarray(photos[cls])
        for k in range(copies):
            w, h = image.size
            # Distinct views of the photo: shifted crops, mirrored on odd k.
            step = k % 7
            crop = image.crop((step * w // 20, step * h // 20, w - step * w // 24, h))
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if k % 2 else crop
            if size:
                crop = crop.resize((size, size * crop.size[1] // crop.size[0]), Image.Resampling.BILINEAR)
            rel = f"images/{cls}_{k}.jpg"
            crop.save(directory / rel, quality=92)
            records.append(_record(directory, rel, label, cls, "train" if k % 2 == 0 else "test", crop))
    if other_formats:
        first = Image.open(directory / records[0]["source"]).convert("RGB")
        for rel, image in (("images/png_copy.png", first), ("images/cmyk_copy.jpg", first.convert("CMYK"))):
            image.save(directory / rel)
            records.append(dict(_record(directory, rel, 0, classes[0], "train", image), mode=image.mode))
    for k in range(corrupt):
        rel = f"images/broken_{k}.jpg"
        data = (directory / records[0]["source"]).read_bytes()[:200]
        (directory / rel).write_bytes(data)  # a truncated JPEG: the header survives, the pixels do not
        records.append(dict(records[0], id=f"broken_{k}", source=rel, sha256=hashlib.sha256(data).hexdigest()))
    write_manifest(directory, pd.DataFrame(records), classes, {"source": "test photos"})
    return directory


def _record(directory: Path, rel: str, label: int, cls: str, split: str, image: Image.Image) -> dict:
    return {"id": rel, "source": rel, "label": label, "class_name": cls, "split": split,
            "fold": 0 if split == "train" else -1, "width": image.size[0], "height": image.size[1],
            "mode": "RGB", "sha256": hashlib.sha256((directory / rel).read_bytes()).hexdigest()}


def onnx_cache_dir(tmp_path_factory) -> Path:
    """One ONNX export cache per test session, shared by every test module that asks for it."""
    path = tmp_path_factory.getbasetemp() / "onnx-cache"
    path.mkdir(exist_ok=True)
    return path


def shared_cache_root(root: Path, cache: Path) -> Path:
    """Point ``root``'s export cache at ``cache`` so tests export each backbone to ONNX once."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cache").symlink_to(cache, target_is_directory=True)
    return root


def save_random_resnet18(path: Path) -> Path:
    """Random-initialised resnet18 weights saved as a state dict (no pretrained weights exist here)."""
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(0)
    torch.save(resnet18(weights=None).state_dict(), path)
    return path


def save_onnx(path: Path, nodes: list, input_shape: list, output_shape: list, input_type: str = "FLOAT") -> Path:
    """A small ONNX graph built node by node: input ``img`` (``input_type``) -> ``nodes`` -> output
    ``feat`` (float); a string in a shape is a free (symbolic) dimension."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("img", getattr(TensorProto, input_type),
                                                                           input_shape)],
                              [helper.make_tensor_value_info("feat", TensorProto.FLOAT, output_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def save_pooling_onnx(path: Path, output_shape: list | None = None) -> Path:
    """A float NCHW 32x32 model whose output is each image's channel means, shaped (n, 3, 1, 1)
    as a net cut at its global pool gives it."""
    from onnx import helper

    return save_onnx(path, [helper.make_node("GlobalAveragePool", ["img"], ["feat"])], ["n", 3, 32, 32],
                     output_shape or ["n", 3, 1, 1])


def test_onnx_input_that_is_not_float_is_refused_at_registration(tmp_path):
    # Before: it registered, then every batch failed in onnxruntime with a 70-line traceback
    # ("Unexpected input data type. Actual: (tensor(float)), expected: (tensor(uint8))").
    from onnx import TensorProto, helper

    save_onnx(tmp_path / "tinyu8.onnx", [helper.make_node("Cast", ["img"], ["x"], to=TensorProto.FLOAT),
                                         helper.make_node("ReduceMean", ["x"], ["feat"], axes=[1, 2], keepdims=0)],
              ["n", 32, 32, 3], ["n", 3], input_type="UINT8")
    spec = tmp_path / "tinyu8.json"
    spec.write_text(json.dumps({"name": "tinyu8", "path": "tinyu8.onnx", "size": 32, "layout": "NHWC"}))
    with pytest.raises(WeightsMismatch) as caught:
        register_onnx_spec(spec)
    message = str(caught.value)
    assert "tinyu8.onnx: the model's input 'img' is uint8, but the extractor feeds float32" in message
    assert "export the model with a float32 input" in message and "\n" not in message


def test_onnx_output_of_several_dims_gives_their_product_as_dim(root, tmp_path):
    # Before: an (n, 3, 1, 1) output was taken as dim 1, and the pass failed with "expected features
    # of shape (k, 1), got (32, 3)"; "dim": 3 was refused as "the model's output 'feat' has 1 features".
    path = save_pooling_onnx(tmp_path / "pool4d.onnx")
    assert onnx_backbone("pool4d", path, size=32).dim == 3
    assert onnx_backbone("pool4d", path, size=32, dim=3).dim == 3
    with pytest.raises(WeightsMismatch, match="the spec says dim 5, but the model's output 'feat' has 3 features"):
        onnx_backbone("pool4d", path, size=32, dim=5)
    # Channels not fixed in the graph: only the spec can say how many features an image gets.
    free = save_pooling_onnx(tmp_path / "free.onnx", ["n", "c", 1, 1])
    with pytest.raises(WeightsCorrupt) as caught:
        onnx_backbone("free", free, size=32)
    assert "free.onnx: the model's output 'feat' is nx?x1x1, so its features per image are not fixed in the " \
           "graph; give dim in the spec" in str(caught.value)
    assert onnx_backbone("free", free, size=32, dim=3).dim == 3

    backbone = register(onnx_backbone("pool4d", path, size=32), replace=True)
    write_photo_dataset(root, "photos", copies=1, size=32)
    (result,) = extract("photos", ["pool4d"], root, progress=False)
    assert (result.status, result.written) == ("extracted", 5)
    stored = featurestore.load_arrays("photos", "pool4d", root=root)
    manifest = load_manifest("photos", root)
    crops = np.stack([backbone.preprocessing.apply(manifest.read_rgb(i)) for i in range(len(manifest))])
    np.testing.assert_allclose(stored.features, backbone.preprocessing.normalize(crops).mean(axis=(2, 3)),
                               rtol=1e-5, atol=1e-5)


def test_damaged_cached_export_is_exported_again_and_a_users_own_file_is_not(root, tmp_path, caplog):
    # Before: every later run failed with "onnxruntime cannot load this model (... Protobuf parsing
    # failed.); export it again", and nothing in featurestore exports on request.
    from featurestore.backbones import get_backbone
    from featurestore.extract.onnx_cache import exported_onnx
    from featurestore.extract.runtimes import RuntimeRequest, build_runtime

    backbone = get_backbone("efficientnet_lite0")
    weights = backbone.weights.resolve()
    path = exported_onnx(backbone, weights, backbone.default_layer, root)
    whole = path.stat().st_size
    with path.open("r+b") as cached:
        cached.truncate(1000)  # as a crash while it was written leaves it
    with caplog.at_level("WARNING", logger="featurestore.extract.runtimes"):
        runner = build_runtime(RuntimeRequest(backbone, weights, backbone.default_layer, root=root), "onnxruntime")
    assert f"{path}: onnxruntime cannot load this cached export; deleting it and exporting efficientnet_lite0 " \
           "again" in caplog.text
    assert path.stat().st_size == whole and [p.name for p in path.parent.iterdir()] == [path.name]
    crop = backbone.preprocessing.apply(np.full((40, 50, 3), 128, np.uint8))
    assert runner(crop[None]).shape == (1, 1280)

    # A user's own ONNX file is theirs to export again: it is neither deleted nor rewritten.
    own = register(onnx_backbone("pool4d", save_pooling_onnx(tmp_path / "pool4d.onnx"), size=32), replace=True)
    own_weights = own.weights.resolve()
    own.weights.path.write_bytes(own.weights.path.read_bytes()[:20])
    with pytest.raises(WeightsCorrupt, match="pool4d.onnx: onnxruntime cannot load this model .*; export it again$"):
        build_runtime(RuntimeRequest(own, own_weights, own.default_layer, root=root))
    assert own.weights.path.stat().st_size == 20


def test_device_readers_on_cpu_say_to_pass_runtime_torch(root):
    # Before: "drop --runtime onnxruntime", though onnxruntime is the CPU default and was never given.
    from featurestore.errors import InvalidName
    from featurestore.extract.reader import open_reader

    write_photo_dataset(root, "photos", copies=1)
    with pytest.raises(InvalidName) as caught:
        extract("photos", ["efficientnet_lite0"], root, reader="device-decode", device="cpu", progress=False)
    assert str(caught.value) == ("reader 'device-decode' cannot read this pass: it needs the torch runtime for every "
                                 "model (it resizes on the model's device); pass --runtime torch (onnxruntime is the "
                                 "default on CPU); choose reader 'threads' or 'processes'")
    # On a GPU torch is the default, so onnxruntime there was asked for (decided without a GPU).
    preprocessing = featurestore.backbones.get_backbone("efficientnet_lite0").preprocessing
    with pytest.raises(InvalidName, match="the model's device\\); drop --runtime onnxruntime; choose reader"):
        open_reader("device-decode", "cuda", load_manifest("photos", root), ["onnxruntime"], [preprocessing])


def test_onnxruntime_without_cuda_on_a_gpu_warns_and_the_store_records_where_it_ran(root, tmp_path, caplog):
    # Before: on a GPU host the CPU-only onnxruntime wheel ran the model on CPU without a word, and
    # the store recorded device cuda. No GPU here: the runtime is built for one directly, as
    # extract would on a GPU host; the store below is extracted on CPU.
    import onnxruntime as ort
    import torch

    from featurestore.extract.runtimes import RuntimeRequest, build_runtime

    if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime runs on the GPU here")
    backbone = register(onnx_backbone("pool4d", save_pooling_onnx(tmp_path / "pool4d.onnx"), size=32), replace=True)
    with caplog.at_level("WARNING", logger="featurestore.extract.runtimes"):
        runner = build_runtime(RuntimeRequest(backbone, backbone.weights.resolve(), backbone.default_layer,
                                              device="cuda"))
    assert "pool4d runs on CPU, not cuda: this onnxruntime has no CUDAExecutionProvider; install onnxruntime-gpu " \
           "in place of onnxruntime to run it on the GPU" in caplog.text
    assert runner.provenance == {"onnxruntime_providers": ["CPUExecutionProvider"], "device": "cpu"}

    write_photo_dataset(root, "photos", copies=1, size=32)
    extract("photos", ["pool4d"], root, device="cpu", progress=False)
    extra = featurestore.load_arrays("photos", "pool4d", root=root).provenance["extra"]
    assert (extra["device"], extra["onnxruntime_providers"]) == ("cpu", ["CPUExecutionProvider"])
