"""The extract step end to end: stores, skip, resume after kill -9, shared decoding, processes, shards."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from store_fixtures import write_store
from test_extract_support import onnx_cache_dir, save_random_resnet18, shared_cache_root, write_photo_dataset
from typer.testing import CliRunner

import featurestore
from featurestore.backbones import WeightsMismatch, get_backbone, onnx_backbone, register
from featurestore.cli import extract_commands
from featurestore.datasets.manifest import Manifest, load_manifest
from featurestore.paths import dataset_dir
from featurestore.errors import InvalidName, InvalidOption
from featurestore.extract import Shard, extract, merge_shards, pending_models, plan_jobs
from featurestore.extract.plan import parse_weights
from featurestore.extract.runner import FeaturesNotFinite
from featurestore.extract.runtimes import HalvingBatches
from featurestore.extract.stop import request_stop, stop_requested
from featurestore.ingest.checksums import digest_file
from featurestore.store import format as fmt
from featurestore.store import StoreWriter, verify_file
from featurestore.store.h5io import open_h5
from featurestore.store.paths import partial_path, store_path

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(tmp_path_factory) -> Path:
    return onnx_cache_dir(tmp_path_factory)


@pytest.fixture
def root(tmp_path, cache) -> Path:
    return shared_cache_root(tmp_path / "root", cache)


class CountingManifest(Manifest):
    """A real manifest that records which rows were decoded."""

    @classmethod
    def of(cls, manifest: Manifest) -> CountingManifest:
        counting = cls(manifest.frame, manifest.hash, manifest.classes, manifest.directory, manifest.info)
        counting.reads = []
        return counting

    def read_image(self, i: int):
        self.reads.append(i)  # list.append is atomic: the reader's threads may call this at once
        return super().read_image(i)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def spawn(root: Path, code: str, own_session: bool = False) -> subprocess.Popen:
    """A Python child running ``code``; ``own_session`` puts it and its children in a process group of their own."""
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=own_session)


def test_store_records_failed_rows_and_second_run_loads_nothing(root):
    write_photo_dataset(root, "photos", copies=2, corrupt=1)
    (first,) = extract("photos", ["efficientnet_lite0"], root, batch_size=4, progress=False)
    assert (first.status, first.rows, first.written, first.failed) == ("extracted", 11, 11, 1)
    arrays = featurestore.load_arrays("photos", "efficientnet_lite0", root=root)
    assert arrays.features.shape == (11, 1280) and arrays.ids[arrays.failed].tolist() == ["broken_0"]
    assert np.all(arrays.features[arrays.failed] == 0) and np.all(np.abs(arrays.features[~arrays.failed]).sum(1) > 0)
    report = verify_file(first.path)
    assert report.ok and any("1 row failed to decode" in w for w in report.warnings)

    # The model is only ever loaded to build the runtime; with the export cache emptied, loading
    # it again would recreate the cached file. The store must not be touched either.
    for exported in (root / "cache" / "onnx").iterdir():
        exported.unlink()
    before = (first.path.stat().st_mtime_ns, first.path.read_bytes())
    (second,) = extract("photos", ["efficientnet_lite0"], root, batch_size=4, progress=False)
    assert second.status == "skipped" and second.written == 0
    assert list((root / "cache" / "onnx").iterdir()) == []
    assert (first.path.stat().st_mtime_ns, first.path.read_bytes()) == before


def test_shared_decoding_gives_the_features_of_separate_passes(root, tmp_path, cache):
    write_photo_dataset(root, "photos", copies=2)
    separate = shared_cache_root(tmp_path / "separate", cache)
    write_photo_dataset(separate, "photos", copies=2)
    models = ["efficientnet_lite0", "efficientnet_lite1"]
    manifest = CountingManifest.of(load_manifest("photos", root))
    together = extract("photos", models, root, batch_size=3, progress=False, manifest=manifest)
    assert [r.status for r in together] == ["extracted", "extracted"]
    assert sorted(manifest.reads) == list(range(len(manifest)))  # every image decoded exactly once
    for model in models:
        extract("photos", [model], separate, batch_size=4, progress=False)
        shared = featurestore.load_arrays("photos", model, root=root).features
        alone = featurestore.load_arrays("photos", model, root=separate).features
        np.testing.assert_allclose(shared, alone, rtol=1e-5, atol=1e-5)


def test_process_reader_writes_the_store_of_the_thread_reader(root, tmp_path, cache):
    write_photo_dataset(root, "photos", copies=3, corrupt=1)
    threads = shared_cache_root(tmp_path / "threads", cache)
    write_photo_dataset(threads, "photos", copies=3, corrupt=1)
    (spawned,) = extract("photos", ["efficientnet_lite0"], root, reader="processes", workers=2, batch_size=4,
                         progress=False)
    (threaded,) = extract("photos", ["efficientnet_lite0"], threads, reader="threads", batch_size=4, progress=False)
    assert (spawned.written, spawned.failed) == (threaded.written, threaded.failed) == (16, 1)
    a = featurestore.load_arrays("photos", "efficientnet_lite0", root=root)
    b = featurestore.load_arrays("photos", "efficientnet_lite0", root=threads)
    assert (a.ids == b.ids).all() and (a.failed == b.failed).all()
    np.testing.assert_array_equal(a.features, b.features)  # same crops, same runtime: same bits
    with pytest.raises(featurestore.errors.InvalidName,
                       match="unknown reader 'fibres': choose one of device-decode, device-resize, processes, threads$"):
        extract("photos", ["efficientnet_lite1"], root, reader="fibres", progress=False)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs dataset-fashion-mnist")
def test_device_resize_reader_gives_the_features_of_pillow_crops(root, tmp_path, cache):
    from featurestore.ingest.pipeline import ingest

    pillow_root = shared_cache_root(tmp_path / "pillow", cache)
    for where in (root, pillow_root):
        ingest("fashion-mnist", where, limit_per_class=3, progress=False)
    # The GPU default for an array dataset, run here on CPU through the same torch runtime.
    (resized,) = extract("fashion-mnist", ["efficientnet_lite0"], root, reader="device-resize", runtime="torch",
                         device="cpu", batch_size=16, progress=False)
    (cropped,) = extract("fashion-mnist", ["efficientnet_lite0"], pillow_root, reader="threads", runtime="torch",
                         device="cpu", batch_size=16, progress=False)
    assert resized.written == cropped.written == 60
    a = featurestore.load_arrays("fashion-mnist", "efficientnet_lite0", root=root)
    b = featurestore.load_arrays("fashion-mnist", "efficientnet_lite0", root=pillow_root)
    assert (a.provenance["extra"]["reader"], b.provenance["extra"]["reader"]) == ("device-resize", "threads")
    assert cosine(a.features, b.features).min() >= 0.9999
    with pytest.raises(featurestore.errors.InvalidName, match="needs the torch runtime"):
        extract("fashion-mnist", ["efficientnet_lite1"], root, reader="device-resize", device="cpu", progress=False)
    # The default on a GPU, decided without one.
    from featurestore.backbones import Preprocessing, get_backbone
    from featurestore.extract.reader import default_reader

    manifest, lite0 = load_manifest("fashion-mnist", root), get_backbone("efficientnet_lite0").preprocessing
    assert default_reader("cuda", manifest, ["torch"], [lite0]) == "device-resize"
    assert default_reader("cuda", manifest, ["torch"], [lite0, Preprocessing(224, 256, "nearest")]) == "processes"
    assert default_reader("cuda", manifest, ["torch", "onnxruntime"], [lite0, lite0]) == "processes"
    assert default_reader("cpu", manifest, ["torch"], [lite0]) == "threads"
    write_photo_dataset(root, "photos", copies=1)
    with pytest.raises(featurestore.errors.InvalidName, match="'photos' is not one"):
        extract("photos", ["efficientnet_lite0"], root, reader="device-resize", runtime="torch", device="cpu",
                progress=False)


def test_device_decode_reader_gives_the_features_of_pillow_crops(root, tmp_path, cache):
    from featurestore.extract.device_decode import decode_rows

    pillow_root = shared_cache_root(tmp_path / "pillow", cache)
    for where in (root, pillow_root):
        write_photo_dataset(where, "photos", copies=3, corrupt=1, size=None, other_formats=True)
    # The GPU reader for JPEG folders, run here on CPU (libjpeg-turbo) through the same torch runtime.
    models = ["efficientnet_lite0", "efficientnet_lite1"]
    decoded = extract("photos", models, root, reader="device-decode", runtime="torch", device="cpu",
                      batch_size=8, progress=False)
    cropped = extract("photos", models, pillow_root, reader="threads", runtime="torch", device="cpu",
                      batch_size=8, progress=False)
    assert [(r.written, r.failed) for r in decoded] == [(r.written, r.failed) for r in cropped] == [(18, 1)] * 2
    for model in models:
        a = featurestore.load_arrays("photos", model, root=root)
        b = featurestore.load_arrays("photos", model, root=pillow_root)
        assert (a.provenance["extra"]["reader"], b.provenance["extra"]["reader"]) == ("device-decode", "threads")
        assert (a.failed == b.failed).all() and a.failed.sum() == 1
        assert cosine(a.features[~a.failed], b.features[~b.failed]).min() >= 0.9999
    # JPEGs, the PNG and the CMYK JPEG (the last two through Pillow) decode to Pillow's very bytes.
    manifest = load_manifest("photos", root)
    batch = decode_rows(manifest, 0, len(manifest), "cpu")
    assert batch.failed.tolist() == manifest.frame["id"].str.startswith("broken").tolist()
    for i in np.flatnonzero(~batch.failed):
        np.testing.assert_array_equal(batch.stored[i].numpy(), manifest.read_rgb(i))
    with pytest.raises(featurestore.errors.InvalidName, match="reader 'device-decode' cannot read this pass: it needs "
                                                              "the torch runtime"):
        extract("photos", ["efficientnet_lite2"], root, reader="device-decode", device="cpu", progress=False)


def test_torchvision_entry_with_weights_file_and_torch_reference(root, tmp_path):
    write_photo_dataset(root, "photos", copies=1)
    weights = save_random_resnet18(tmp_path / "resnet18-random.pth")
    (fast,) = extract("photos", ["resnet18"], root, weights={"resnet18": str(weights)}, progress=False)
    assert fast.runtime == "onnxruntime"
    stored = featurestore.load_arrays("photos", "resnet18", root=root)
    assert stored.features.shape == (5, 512)
    assert stored.provenance["weights_sha256"] == digest_file(weights)
    reference_root = tmp_path / "reference"
    write_photo_dataset(reference_root, "photos", copies=1)
    (eager,) = extract("photos", ["resnet18"], reference_root, weights={"resnet18": str(weights)}, runtime="torch",
                       device="cpu", progress=False)
    assert eager.runtime == "torch"
    reference = featurestore.load_arrays("photos", "resnet18", root=reference_root).features
    assert cosine(stored.features, reference).min() >= 0.999
    with pytest.raises(WeightsMismatch, match="resnet18-random.pth"):
        extract("photos", ["efficientnet_lite0"], tmp_path / "reference", weights={"efficientnet_lite0": str(weights)},
                progress=False)
    # The model failed to load before any row: no "interrupted 0/5" store is left behind.
    assert featurestore.catalog(root=reference_root)["model"].tolist() == ["resnet18"]


def test_onnx_file_entry_end_to_end(root, tmp_path):
    write_photo_dataset(root, "photos", copies=1)
    torch.manual_seed(1)
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    model.fc = torch.nn.Identity()
    model.eval()
    path = tmp_path / "mynet.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 112, 112),), str(path), dynamo=False, input_names=["image"],
                      output_names=["embedding"], dynamic_axes={"image": {0: "n"}, "embedding": {0: "n"}})
    backbone = register(onnx_backbone("mynet", path, size=112, resize=128), replace=True)
    assert backbone.dim == 512 and backbone.default_layer == "embedding"
    (result,) = extract("photos", ["mynet"], root, progress=False)
    assert result.status == "extracted"
    stored = featurestore.load_arrays("photos", "mynet", root=root)
    manifest = load_manifest("photos", root)
    pixels = np.stack([backbone.preprocessing.apply(manifest.read_rgb(i)) for i in range(len(manifest))])
    with torch.inference_mode():
        reference = model(torch.from_numpy(backbone.preprocessing.normalize(pixels))).numpy()
    assert cosine(stored.features, reference).min() >= 0.999
    # `featurestore extract --onnx-spec SPEC` (no --models) extracts the spec's model, not the default backbone.
    spec = tmp_path / "mynet.json"
    spec.write_text(json.dumps({"name": "mynet", "path": "mynet.onnx", "size": 112, "resize": 128}))
    app = typer.Typer()
    extract_commands.register(app)
    ran = CliRunner().invoke(app, ["extract", "-d", "photos", "--onnx-spec", str(spec), "--root", str(root), "--json"])
    assert ran.exit_code == 0, ran.output
    assert [(r["model"], r["status"]) for r in json.loads(ran.output)] == [("mynet", "skipped")]


def slow_extraction_child(root: Path, overwrite: bool = False) -> subprocess.Popen:
    """A child extracting dataset 'many' a few rows per commit; Ctrl-C raises KeyboardInterrupt in it."""
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from featurestore.extract import extract; "
            f"extract('many', ['efficientnet_lite0'], {str(root)!r}, batch_size=4, workers=1, threads=1, commit_bytes=1, "
            f"overwrite={overwrite})")
    return spawn(root, code)


def wait_for_commits(child: subprocess.Popen, root: Path, rows: int) -> int:
    """Wait until the child has committed at least ``rows`` rows of 'many'; return how many."""
    partial = partial_path(store_path("many", "efficientnet_lite0", root))
    deadline = time.time() + 120
    committed = 0
    while committed < rows and time.time() < deadline and child.poll() is None:
        time.sleep(0.2)
        if partial.exists():
            try:
                with open_h5(partial, locking=False) as file:
                    committed = int(file[fmt.COMMITTED][0])
            except Exception:  # noqa: BLE001 - the writer may be mid-flush; look again
                continue
    assert child.poll() is None, child.communicate()[1][-2000:]
    return committed


def test_kill_9_then_resume_gives_the_same_matrix(root, tmp_path, cache):
    write_photo_dataset(root, "many", copies=24, size=48)
    child = slow_extraction_child(root)
    committed = wait_for_commits(child, root, 12)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 12 <= committed < 120
    (resumed,) = extract("many", ["efficientnet_lite0"], root, batch_size=8, progress=False)
    assert resumed.status == "resumed" and resumed.written < 120
    clean = shared_cache_root(tmp_path / "clean", cache)
    write_photo_dataset(clean, "many", copies=24, size=48)
    extract("many", ["efficientnet_lite0"], clean, batch_size=8, progress=False)
    np.testing.assert_allclose(featurestore.load_arrays("many", "efficientnet_lite0", root=root).features,
                               featurestore.load_arrays("many", "efficientnet_lite0", root=clean).features,
                               rtol=1e-5, atol=1e-5)


def test_ctrl_c_keeps_the_rows_and_says_how_to_resume(root):
    write_photo_dataset(root, "many", copies=24, size=48)
    child = slow_extraction_child(root)
    wait_for_commits(child, root, 8)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr
    assert re.search(r"efficientnet_lite0\.h5\.partial: stopped after (\d+) of 120 rows, which are kept; run extract again", stderr)
    kept = int(re.search(r"stopped after (\d+) of 120", stderr).group(1))
    (state,) = featurestore.catalog(root=root)["state"]
    assert kept >= 8 and state == f"interrupted {kept}/120"
    (resumed,) = extract("many", ["efficientnet_lite0"], root, batch_size=8, progress=False)
    assert (resumed.status, resumed.written) == ("resumed", 120 - kept)


def test_ctrl_c_while_overwriting_says_that_only_overwrite_resumes(root):
    write_photo_dataset(root, "many", copies=2, size=48)
    extract("many", ["efficientnet_lite0"], root, progress=False)
    write_photo_dataset(root, "many", copies=24, size=48)  # ingested again: the complete store is now stale
    child = slow_extraction_child(root, overwrite=True)
    wait_for_commits(child, root, 8)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert re.search(r"efficientnet_lite0\.h5\.partial: stopped after \d+ of 120 rows, which are kept; run extract "
                     r"again with --overwrite to resume", stderr), stderr[-2000:]
    with pytest.raises(featurestore.errors.StoreConflict):
        extract("many", ["efficientnet_lite0"], root, progress=False)
    (resumed,) = extract("many", ["efficientnet_lite0"], root, overwrite=True, progress=False)
    assert resumed.status == "resumed"


def test_a_stop_while_the_model_loads_says_that_nothing_was_written(root, tmp_path):
    # Ctrl-C (or a cancelled flow run) during a model's load, a first ONNX export say, printed
    # nothing and exited 130: the store it had created went without a word.
    write_photo_dataset(root, "photos", copies=1)
    weights = save_random_resnet18(tmp_path / "resnet18-random.pth")
    resnet18 = get_backbone("resnet18")

    def build_then_stop():
        request_stop()  # what featurestore extract's Ctrl-C handler does, here while the model loads
        return resnet18.build()

    register(dataclasses.replace(resnet18, name="stopping_resnet18", build=build_then_stop), replace=True)
    app = typer.Typer()
    extract_commands.register(app)
    ran = CliRunner().invoke(app, ["extract", "-d", "photos", "-m", "stopping_resnet18", "--weights", str(weights),
                                   "--runtime", "torch", "--device", "cpu", "--no-progress", "--root", str(root)])
    assert (ran.exit_code, ran.stdout) == (130, "")
    assert ran.stderr.splitlines() == ["stopped while loading stopping_resnet18; nothing was written"]
    assert featurestore.catalog(root=root)["model"].tolist() == [] and not stop_requested()


def test_only_a_store_of_an_earlier_manifest_is_replaced_with_replace_stale(root):
    write_photo_dataset(root, "photos", copies=1, size=48)
    extract("photos", ["efficientnet_lite0"], root, progress=False)
    current = load_manifest("photos", root).hash
    # Built from this manifest with other weights: a conflict that replace_stale leaves alone.
    write_store(root, dataset="photos", model="efficientnet_lite1", manifest_hash=current)
    with pytest.raises(featurestore.errors.StoreConflict, match="built from other inputs than requested") as refused:
        pending_models("photos", ["efficientnet_lite1"], root, replace_stale=True)
    assert not isinstance(refused.value, featurestore.errors.StoreStale)
    assert pending_models("photos", ["efficientnet_lite1"], root, overwrite=True) == ["efficientnet_lite1"]

    write_photo_dataset(root, "photos", copies=2, size=48)  # ingested again
    with pytest.raises(featurestore.errors.StoreStale, match="built from an earlier manifest of 'photos'"):
        extract("photos", ["efficientnet_lite0"], root, progress=False)
    assert pending_models("photos", ["efficientnet_lite0"], root, replace_stale=True) == ["efficientnet_lite0"]
    (rebuilt,) = extract("photos", ["efficientnet_lite0"], root, replace_stale=True, progress=False)
    assert (rebuilt.status, rebuilt.written) == ("extracted", len(load_manifest("photos", root).frame))
    assert featurestore.load_arrays("photos", "efficientnet_lite0", root=root).provenance["manifest_hash"] != current


def test_two_backbones_in_two_processes_then_shards_in_two_processes(root, tmp_path, cache):
    write_photo_dataset(root, "photos", copies=3)
    expected_root = shared_cache_root(tmp_path / "expected", cache)
    write_photo_dataset(expected_root, "photos", copies=3)
    models = ["efficientnet_lite0", "efficientnet_lite1"]
    extract("photos", models, expected_root, progress=False)  # also fills the export cache for the children

    children = [spawn(root, f"from featurestore.extract import extract; extract('photos', [{m!r}], {str(root)!r})")
                for m in models]
    for child in children:
        assert child.wait(timeout=180) == 0, child.stderr.read()[-2000:]
    for model in models:
        np.testing.assert_allclose(featurestore.load_arrays("photos", model, root=root).features,
                                   featurestore.load_arrays("photos", model, root=expected_root).features,
                                   rtol=1e-5, atol=1e-5)

    sharded = shared_cache_root(tmp_path / "sharded", cache)
    write_photo_dataset(sharded, "photos", copies=3)
    children = [spawn(sharded, "from featurestore.extract import extract, Shard; "
                               f"extract('photos', ['efficientnet_lite0'], {str(sharded)!r}, shard=Shard({i}, 2))")
                for i in range(2)]
    for child in children:
        assert child.wait(timeout=180) == 0, child.stderr.read()[-2000:]
    assert not store_path("photos", "efficientnet_lite0", sharded).exists()
    (merged,) = merge_shards("photos", ["efficientnet_lite0"], 2, sharded)
    assert merged.status == "merged" and merged.written == 15
    whole = featurestore.load_arrays("photos", "efficientnet_lite0", root=sharded)
    reference = featurestore.load_arrays("photos", "efficientnet_lite0", root=expected_root)
    assert whole.fingerprint == reference.fingerprint
    np.testing.assert_allclose(whole.features, reference.features, rtol=1e-5, atol=1e-5)
    assert [r.status for r in extract("photos", ["efficientnet_lite0"], sharded, progress=False)] == ["skipped"]


def test_merge_names_the_missing_shard_with_a_command_that_runs_as_written(root):
    write_photo_dataset(root, "photos", copies=1)
    extract("photos", ["efficientnet_lite0"], root, shard=Shard(0, 2), progress=False)
    with pytest.raises(featurestore.errors.StoreIncomplete, match="1-of-2") as caught:
        merge_shards("photos", ["efficientnet_lite0"], 2, root)
    command = re.search(r"run `featurestore (extract [^`]+)`", str(caught.value)).group(1)
    assert command == f"extract -d photos -m efficientnet_lite0 --shard 1/2 --root {root}"
    app = typer.Typer()
    extract_commands.register(app)
    ran = CliRunner().invoke(app, [*command.split(), "--root", str(root), "--no-progress"])
    assert ran.exit_code == 0, ran.output
    merged = CliRunner().invoke(app, ["merge-shards", "-d", "photos", "-m", "efficientnet_lite0", "--count", "2",
                                      "--root", str(root)])
    assert merged.exit_code == 0, merged.output
    # A merge runs no model: its table has no images/s (it showed 0.0) under a title of its own.
    assert "merge-shards" in merged.output and "merged" in merged.output and "images_per" not in merged.output
    with pytest.raises(InvalidOption, match="--shard 0/99: photos has 5 rows, fewer than the 99 shards"):
        extract("photos", ["efficientnet_lite0"], root, shard=Shard(0, 99), progress=False)
    with pytest.raises(InvalidOption, match=r"^--count 0: the shard count is not positive"):  # exit 2: an option
        merge_shards("photos", ["efficientnet_lite0"], 0, root)


def test_merge_hint_for_a_shard_of_a_weights_file_at_another_layer_runs_as_written(root, tmp_path):
    write_photo_dataset(root, "photos", copies=1)
    weights = save_random_resnet18(tmp_path / "resnet18-random.pth")
    app = typer.Typer()
    extract_commands.register(app)
    with pytest.raises(featurestore.errors.StoreIncomplete, match="0-of-2") as caught:
        merge_shards("photos", ["resnet18"], 2, root, weights={"resnet18": str(weights)}, layer="logits")
    command = re.search(r"run `featurestore (extract [^`]+)`", str(caught.value)).group(1)
    # The store's name (resnet18.logits) is no backbone: the command names the backbone, its layer
    # and the weights file, without which the shard would be of other weights (or none offline).
    assert command == f"extract -d photos -m resnet18 --layer logits --weights {weights} --shard 0/2 --root {root}"
    for index in (0, 1):
        ran = CliRunner().invoke(app, [*command.replace("0/2", f"{index}/2").split(), "--root", str(root),
                                       "--no-progress"])
        assert ran.exit_code == 0, ran.output
    (merged,) = merge_shards("photos", ["resnet18"], 2, root, weights={"resnet18": str(weights)}, layer="logits")
    assert (merged.model, merged.status, merged.written) == ("resnet18.logits", "merged", 5)


def test_features_that_are_not_finite_are_reported_at_extraction(root, tmp_path, caplog):
    write_photo_dataset(root, "photos", copies=1)

    class Broken(torch.nn.Module):
        def forward(self, x):
            features = x.mean(dim=(2, 3))
            first = (torch.arange(x.shape[0]) == 0)[:, None]  # the first image of each run: NaN, as from a bad layer
            return torch.where(first, torch.full_like(features, float("nan")), features)

    path = tmp_path / "broken.onnx"
    torch.onnx.export(Broken(), (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, input_names=["image"],
                      output_names=["features"], dynamic_axes={"image": {0: "n"}, "features": {0: "n"}})
    register(onnx_backbone("broken", path, size=32, dim=3), replace=True)
    with caplog.at_level("WARNING", logger="featurestore.extract.runner"):
        (result,) = extract("photos", ["broken"], root, progress=False)
    assert result.status == "extracted"
    not_finite = int((~np.isfinite(featurestore.load_arrays("photos", "broken", root=root).features).all(1)).sum())
    assert 0 < not_finite < 5
    assert (f"broken.h5: {not_finite} of 5 rows have NaN or infinite features: the model or its weights are "
            "probably broken") in caplog.text


def test_out_of_memory_halves_the_batch_and_goes_on():
    def run(batch):
        if len(batch) > 3:
            raise MemoryError(f"batch of {len(batch)} does not fit")
        return batch * 2

    halving = HalvingBatches(16, (MemoryError,))
    parts = halving(run, np.arange(10))
    assert halving.limit == 2
    np.testing.assert_array_equal(np.concatenate(parts), np.arange(10) * 2)


def test_cli_extract_and_one_line_errors(root):
    write_photo_dataset(root, "photos", copies=1)
    app = typer.Typer()
    extract_commands.register(app)
    runner = CliRunner()
    ok = runner.invoke(app, ["extract", "--dataset", "photos", "--models", "efficientnet_lite0", "--root", str(root),
                             "--no-progress", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)[0]["status"] == "extracted"
    write_photo_dataset(root, "more", copies=1)
    both = runner.invoke(app, ["extract", "-d", "photos,more", "--root", str(root), "--no-progress", "--json"])
    assert [(r["dataset"], r["status"]) for r in json.loads(both.stdout)] == [("photos", "skipped"), ("more", "extracted")]
    blocker = root / "a-file"
    blocker.write_text("not a directory")
    below_a_file = runner.invoke(app, ["extract", "--dataset", "photos", "--root", str(blocker / "home")])
    assert f"no featurestore root at {blocker / 'home'}; check --root" in str(below_a_file.exception)
    typo = root.parent / "no-such-root"
    missing = runner.invoke(app, ["extract", "--dataset", "photos", "--root", str(typo)])
    assert f"no featurestore root at {typo}" in str(missing.exception) and not typo.exists()  # none made there
    unknown = runner.invoke(app, ["extract", "--dataset", "photos", "--models", "resnet9000", "--root", str(root)])
    assert "efficientnet_lite0" in str(unknown.exception) and "\n" not in str(unknown.exception)
    if not torch.cuda.is_available():
        no_gpu = runner.invoke(app, ["extract", "--dataset", "photos", "--root", str(root), "--device", "cuda",
                                     "--overwrite"])
        assert "no CUDA GPU" in str(no_gpu.exception) and "--device cpu" in str(no_gpu.exception)
    assert runner.invoke(app, ["extract", "--help"]).exit_code == 0
    assert runner.invoke(app, ["merge-shards", "--help"]).exit_code == 0


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "featurestore.cli", *args], capture_output=True, text=True,
                          timeout=120)


def complete_without_a_model(root: Path, dataset: str, model: str) -> Path:
    """The complete store extract would write (same fingerprint), filled with zeros: no model loads."""
    (job,) = plan_jobs(load_manifest(dataset, root), dataset, [model], root)
    with StoreWriter.open(job.spec, job.rows, job.root) as writer:
        writer.write(np.zeros((len(job.rows), job.spec.dim), np.float32))
        return writer.finalize()


@pytest.mark.parametrize("options, message", [
    ({"batch_size": -5}, "--batch-size -5: must be 1 or more; leave it out for the default"),
    ({"batch_size": 0}, "--batch-size 0: must be 1 or more"),
    ({"workers": 0}, "--workers 0: must be 1 or more"),
    ({"threads": 0}, "--threads 0: must be 1 or more"),
    ({"precision": "fp8"}, "--precision fp8: not one of fp32, bf16, fp16; leave it out for the default of the "
                           "runtime (torch: bf16 on GPU, fp32 on CPU; onnxruntime: fp32)"),
    ({"precision": "fp16"}, "--precision fp16: efficientnet_lite0 runs on onnxruntime here, which computes in fp32 "
                            "only; use --runtime torch or leave --precision out"),
    ({"precision": "bf16", "runtime": "onnxruntime"}, "--precision bf16: efficientnet_lite0 runs on onnxruntime"),
    ({"runtime": "fibres"}, "unknown runtime 'fibres': choose one of onnxruntime, torch"),
    ({"reader": "gpu"}, "unknown reader 'gpu': choose one of device-decode, device-resize, processes, threads"),
])
def test_bad_options_fail_even_when_every_store_is_complete(root, options, message):
    write_photo_dataset(root, "photos", copies=1)
    store = complete_without_a_model(root, "photos", "efficientnet_lite0")
    before = store.stat().st_mtime_ns
    with pytest.raises((InvalidOption, InvalidName)) as caught:
        extract("photos", ["efficientnet_lite0"], root, device="cpu", progress=False, **options)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert store.stat().st_mtime_ns == before
    assert extract("photos", ["efficientnet_lite0"], root, device="cpu", progress=False)[0].status == "skipped"


def test_cli_refuses_a_negative_batch_size_before_any_store(root):
    # It once ran no batch and failed at the end: "cannot finalize after 0 of 5 rows".
    write_photo_dataset(root, "photos", copies=1)
    result = cli("extract", "-d", "photos", "--batch-size", "-5", "--root", str(root), "--no-progress")
    assert (result.returncode, result.stderr) == (2, "error: --batch-size -5: must be 1 or more; leave it out "
                                                     "for the default\n")
    assert not (root / "stores").exists()


def test_cli_refuses_weights_for_a_model_it_does_not_extract(root, tmp_path):
    # They were silently ignored.
    write_photo_dataset(root, "photos", copies=1)
    weights = save_random_resnet18(tmp_path / "resnet18-random.pth")
    result = cli("extract", "-d", "photos", "-m", "efficientnet_lite0,efficientnet_lite1", "--weights",
                 f"resnet18={weights}", "--root", str(root), "--no-progress")
    assert (result.returncode, result.stderr) == (2, (
        f"error: --weights resnet18={weights}: 'resnet18' is not among the models of this run (efficientnet_lite0, "
        "efficientnet_lite1); add it to --models or fix the name\n"))
    assert not (root / "stores").exists()


def test_bf16_autocast_stays_close_to_fp32():
    # The GPU path's bf16 autocast, run on CPU: same number format, so the same size of error.
    # (fp16 autocast is emulated on CPU and far too slow for a test; measured once: cosine 0.99998.)
    from test_extract_support import real_photos

    from featurestore.backbones import get_backbone
    from featurestore.extract.feature_net import FeatureNet
    from featurestore.extract.runtimes import TorchRunner

    backbone = get_backbone("efficientnet_lite0")
    weights = backbone.weights.resolve()
    photos = real_photos()
    pixels = np.stack([backbone.preprocessing.apply(photos[name]) for name in ("chelsea", "coffee")])
    reference = TorchRunner(FeatureNet(backbone.load_torch(weights), backbone.preprocessing), "cpu", "fp32")(pixels)
    half = TorchRunner(FeatureNet(backbone.load_torch(weights), backbone.preprocessing), "cpu", "bf16")(pixels)
    assert half.dtype == np.float32 and cosine(half, reference).min() >= 0.998


def test_onnx_streams_give_the_features_of_one_run(root):
    # The CPU default splits each batch over CPU_STREAMS concurrent runs; the rows must come back
    # in order and as one run computes them, however the batch divides.
    from test_extract_support import real_photos

    from featurestore.backbones import get_backbone
    from featurestore.extract.onnx_cache import INPUT_NAME, exported_onnx
    from featurestore.extract.runtimes import CPU_STREAMS, OnnxRunner

    backbone = get_backbone("efficientnet_lite0")
    path = exported_onnx(backbone, backbone.weights.resolve(), backbone.default_layer, root)
    crops = np.stack([backbone.preprocessing.apply(photo) for photo in real_photos().values()])  # 5 photos
    one = OnnxRunner(path, INPUT_NAME, backbone.preprocessing, threads=2, streams=1)
    split = OnnxRunner(path, INPUT_NAME, backbone.preprocessing, threads=2)
    assert (one.streams, split.streams, CPU_STREAMS) == (1, 2, 2)
    for rows in (crops, crops[:1]):
        handle = split.submit(rows)
        assert isinstance(handle, list) and len(handle) == min(len(rows), 2)
        np.testing.assert_allclose(split.collect(handle), one(rows), rtol=1e-5, atol=1e-6)
    assert OnnxRunner(path, INPUT_NAME, backbone.preprocessing, threads=1).streams == 1


def test_a_pass_in_another_precision_starts_again_and_only_an_explicit_one_replaces_a_store(root, monkeypatch, caplog):
    # Before: the fp32 pass resumed the bf16 rows (a mixed store, provenance saying fp32), and a
    # complete bf16 store was "complete with the same fingerprint; skipped" even with --precision
    # fp32 --overwrite.
    from featurestore.extract import stop, writer as background

    write_photo_dataset(root, "photos", copies=2, size=48)
    options = dict(device="cpu", runtime="torch", batch_size=2, progress=False)
    put = background.BackgroundWriter.put

    def put_then_ctrl_c(self, *args):
        put(self, *args)
        stop.request_stop()  # as Ctrl-C after the first batch

    monkeypatch.setattr(background.BackgroundWriter, "put", put_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        extract("photos", ["efficientnet_lite0"], root, precision="bf16", **options)
    monkeypatch.setattr(background.BackgroundWriter, "put", put)
    stop.clear_stop()
    (state,) = featurestore.catalog(root=root)["state"]
    assert state.startswith("interrupted")

    (fp32,) = extract("photos", ["efficientnet_lite0"], root, precision="fp32", **options)
    assert (fp32.status, fp32.written) == ("extracted", fp32.rows)
    assert "computed in bf16 and this pass computes in fp32); starting again" in caplog.text
    assert featurestore.load_arrays("photos", "efficientnet_lite0", root=root).provenance["precision"] == "fp32"

    # Without --precision any complete store serves; with another one, only --overwrite replaces it.
    assert [r.status for r in extract("photos", ["efficientnet_lite0"], root, **options)] == ["skipped"]
    with pytest.raises(featurestore.errors.StoreConflict, match="store was computed in fp32, not in the requested bf16"):
        extract("photos", ["efficientnet_lite0"], root, precision="bf16", **options)
    assert pending_models("photos", ["efficientnet_lite0"], root, precision="bf16", overwrite=True) == ["efficientnet_lite0"]
    (bf16,) = extract("photos", ["efficientnet_lite0"], root, precision="bf16", overwrite=True, **options)
    assert bf16.status == "extracted"
    assert featurestore.load_arrays("photos", "efficientnet_lite0", root=root).provenance["precision"] == "bf16"


def test_merge_refuses_shards_computed_in_different_precisions(root):
    write_photo_dataset(root, "photos", copies=1, size=48)
    options = dict(device="cpu", runtime="torch", progress=False)
    extract("photos", ["efficientnet_lite0"], root, shard=Shard(0, 2), precision="bf16", **options)
    extract("photos", ["efficientnet_lite0"], root, shard=Shard(1, 2), **options)
    with pytest.raises(featurestore.errors.FeatureStoreError) as refused:
        merge_shards("photos", ["efficientnet_lite0"], 2, root)
    assert str(refused.value).startswith("photos/efficientnet_lite0: its shards were computed in different "
                                         "precisions (0-of-2 bf16, 1-of-2 fp32); a merge would mix them")
    assert not store_path("photos", "efficientnet_lite0", root).exists()
    extract("photos", ["efficientnet_lite0"], root, shard=Shard(0, 2), precision="fp32", overwrite=True, **options)
    (merged,) = merge_shards("photos", ["efficientnet_lite0"], 2, root)
    arrays = featurestore.load_arrays("photos", "efficientnet_lite0", root=root)
    assert merged.status == "merged" and arrays.provenance["precision"] == "fp32"
    assert [s["precision"] for s in arrays.provenance["extra"]["merged_from"]] == ["fp32", "fp32"]


def test_a_stale_shard_names_the_rm_command_that_removes_it(root):
    # The hint named `featurestore rm D M`, which deletes the merged store and leaves the shard.
    write_photo_dataset(root, "photos", copies=1, size=48)
    (job,) = plan_jobs(load_manifest("photos", root), "photos", ["efficientnet_lite0"], root, shard=Shard(1, 2))
    with StoreWriter.open(job.spec, job.rows, job.root) as writer:
        writer.write(np.zeros((len(job.rows), job.spec.dim), np.float32))
        writer.finalize()
    write_photo_dataset(root, "photos", copies=2, size=48)  # ingested again: the shard is stale
    with pytest.raises(featurestore.errors.StoreStale) as stale:
        extract("photos", ["efficientnet_lite0"], root, shard=Shard(1, 2), progress=False)
    command = re.search(r"remove it with `(featurestore rm [^`]+)`", str(stale.value)).group(1)
    assert command == f"featurestore rm photos efficientnet_lite0 --root {job.root}"
    from featurestore.cli import app

    removed = CliRunner().invoke(app, command.split()[1:])
    assert removed.exit_code == 0, removed.output
    assert not job.path.exists()



def test_overwrite_never_replaces_a_file_that_is_not_a_store(root):
    # --overwrite replaced a pandas file of the user's at the store's path, and ran a whole pass
    # before failing with a traceback on a directory there.
    write_photo_dataset(root, "photos", copies=1)
    path = store_path("photos", "efficientnet_lite0", root)
    path.parent.mkdir(parents=True)
    import pandas as pd

    pd.DataFrame({"mine": np.arange(5)}).to_hdf(path, key="results")
    before = path.read_bytes()
    for options in ({}, {"overwrite": True}, {"replace_stale": True}):
        with pytest.raises(featurestore.errors.StoreCorrupt, match="not a featurestore store .*; move it out"):
            extract("photos", ["efficientnet_lite0"], root, progress=False, **options)
    assert path.read_bytes() == before and not partial_path(path).exists()
    path.unlink()
    (path / "mine").mkdir(parents=True)
    with pytest.raises(featurestore.errors.StoreCorrupt, match="is a directory, not a store file"):
        pending_models("photos", ["efficientnet_lite0"], root, overwrite=True)
    with pytest.raises(featurestore.errors.StoreCorrupt, match="is a directory, not a store file"):
        extract("photos", ["efficientnet_lite0"], root, overwrite=True, progress=False)
    assert (path / "mine").is_dir() and not partial_path(path).exists()


def test_a_stale_store_of_other_weights_is_a_conflict_that_names_the_weights(root):
    # featurestore run (replace_stale) replaced a stale store of a user's weights file with one of
    # the default weights: only a store whose manifest is its one difference is stale.
    write_photo_dataset(root, "photos", copies=1)
    lite0 = featurestore.backbones.get_backbone("efficientnet_lite0").weights.resolve(None)
    write_store(root, dataset="photos", model="efficientnet_lite0", dim=1280, manifest_hash="e" * 64,
                extra={"weights_source": "file:/w/fine-tuned.pth"})
    with pytest.raises(featurestore.errors.StoreConflict) as refused:
        pending_models("photos", ["efficientnet_lite0"], root, replace_stale=True)
    assert not isinstance(refused.value, featurestore.errors.StoreStale)
    message = str(refused.value)
    assert (f"store was built from other inputs than requested (built from an earlier manifest of 'photos' "
            f"(ingested again since); weights: sha256 wwwwwwwwwwww (file:/w/fine-tuned.pth) stored, "
            f"{lite0.sha256[:12]} requested (check --weights); preprocessing: ") in message
    assert pending_models("photos", ["efficientnet_lite0"], root, overwrite=True) == ["efficientnet_lite0"]


def test_a_weights_path_holding_equals_signs_is_one_models_file(tmp_path):
    # Read as MODEL=FILE, `--weights ckpt/lr=0.01/epoch=3-step=120.pth` named a model 'ckpt/lr'.
    checkpoint = tmp_path / "lr=0.01" / "epoch=3-step=120.pth"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights")
    assert parse_weights([str(checkpoint)], ["resnet18"]) == {"resnet18": str(checkpoint)}
    assert parse_weights([f"resnet18={checkpoint}"], ["resnet18"]) == {"resnet18": str(checkpoint)}
    with pytest.raises(InvalidName, match="'resnet50' is not among the models of this run"):
        parse_weights([f"resnet50={checkpoint}"], ["resnet18"])
    with pytest.raises(InvalidName, match="with several models write --weights MODEL=FILE"):
        parse_weights([str(tmp_path / "best.pth")], ["resnet18", "resnet50"])


def test_rows_that_failed_are_said_and_overwrite_extracts_them_again(root, tmp_path, caplog):
    # An image unreadable for a moment stayed a row of zeros: extract, even with --overwrite,
    # skipped the store and said "failed": 0.
    write_photo_dataset(root, "photos", copies=2)
    image = dataset_dir("photos", root) / "images" / "chelsea_1.jpg"
    image.rename(tmp_path / "away.jpg")
    (first,) = extract("photos", ["efficientnet_lite0"], root, progress=False)
    assert (first.status, first.failed) == ("extracted", 1)
    (tmp_path / "away.jpg").rename(image)
    with caplog.at_level("WARNING"):
        (again,) = extract("photos", ["efficientnet_lite0"], root, progress=False)
    assert (again.status, again.failed) == ("skipped", 1)
    assert "complete, with 1 rows whose images failed to decode at extraction" in caplog.text
    (warning,) = verify_file(first.path).warnings
    assert warning.endswith("images/chelsea_1.jpg; if their images read now, `featurestore extract -d photos -m "
                            f"efficientnet_lite0 --overwrite --root {root}` extracts the store again")
    assert pending_models("photos", ["efficientnet_lite0"], root, overwrite=True) == ["efficientnet_lite0"]
    (redone,) = extract("photos", ["efficientnet_lite0"], root, overwrite=True, progress=False)
    assert (redone.status, redone.failed, redone.written) == ("extracted", 0, redone.rows)
    assert not featurestore.load_arrays("photos", "efficientnet_lite0", root=root).failed.any()
    (last,) = extract("photos", ["efficientnet_lite0"], root, overwrite=True, progress=False)
    assert (last.status, last.failed) == ("skipped", 0)


def test_weights_that_give_only_nan_never_replace_a_store(root, tmp_path):
    # With --overwrite, a pass whose every row was NaN replaced a good store and exited 0.
    write_photo_dataset(root, "photos", copies=1, size=48)
    (good,) = extract("photos", ["efficientnet_lite0"], root, progress=False)
    before = good.path.read_bytes()
    lite0 = featurestore.backbones.get_backbone("efficientnet_lite0")
    state = torch.load(lite0.weights.resolve(None).path, weights_only=True)
    broken = tmp_path / "nan.pth"
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}, broken)
    with pytest.raises(FeaturesNotFinite, match=r"efficientnet_lite0\.h5\.partial: all 5 rows came out NaN or infinite: "
                                                r"the model or its weights are broken; that store was deleted unfinished"):
        extract("photos", ["efficientnet_lite0"], root, weights={"efficientnet_lite0": str(broken)}, overwrite=True,
                progress=False)
    assert good.path.read_bytes() == before and not partial_path(good.path).exists()


def test_a_reader_that_cannot_serve_the_models_is_refused_when_every_store_is_complete(root):
    # It was checked only when a store was pending: with all complete, --reader device-decode
    # (torch only) on onnxruntime's CPU passed silently.
    write_photo_dataset(root, "photos", copies=1, size=48)
    extract("photos", ["efficientnet_lite0"], root, progress=False)
    with pytest.raises(InvalidName, match="reader 'device-decode' cannot read this pass: it needs the torch runtime"):
        extract("photos", ["efficientnet_lite0"], root, reader="device-decode", progress=False)
    (skipped,) = extract("photos", ["efficientnet_lite0"], root, reader="threads", progress=False)
    assert skipped.status == "skipped"
