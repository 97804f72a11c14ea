"""Fashion-MNIST from the real Debian package files (dataset-fashion-mnist), official split."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from featurestore.datasets import get_dataset, load_manifest
from featurestore.datasets.errors import ChecksumMismatch
from featurestore.ingest import download
from featurestore.ingest.pipeline import ingest

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(
    not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
    reason="needs the Debian package dataset-fashion-mnist (apt-get install -y dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    return root, ingest("fashion-mnist", root, progress=False)


def test_full_ingest_matches_the_published_counts(fashion):
    root, result = fashion
    manifest = load_manifest("fashion-mnist", root)
    frame = manifest.frame
    assert result.images == len(frame) == 70_000 and result.quarantined == 0
    assert frame["split"].value_counts().to_dict() == {"train": 60_000, "test": 10_000}
    assert (frame[frame["split"] == "train"]["label"].value_counts() == 6_000).all()
    assert (frame[frame["split"] == "test"]["label"].value_counts() == 1_000).all()
    assert manifest.classes[0] == "T-shirt/top" and manifest.classes[9] == "Ankle boot"
    assert (frame["width"] == 28).all() and (frame["height"] == 28).all() and (frame["mode"] == "L").all()
    assert frame["source"].iat[0] == "images.npy#0" and frame["id"].iat[-1] == "test/09999"


def test_pixels_are_the_idx_files_own(fashion):
    root, _ = fashion
    manifest = load_manifest("fashion-mnist", root)
    with gzip.open(DEBIAN / "t10k-images-idx3-ubyte.gz") as handle:
        raw = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    last = len(manifest) - 1
    image = manifest.read_rgb(last)
    assert image.shape == (28, 28, 3) and (image[..., 0] == raw[-1]).all() and (image[..., 2] == raw[-1]).all()
    batch = manifest.read_rgb_batch([0, 5, last])
    assert batch.shape == (3, 28, 28, 3) and (batch[2] == image).all()


def test_rerun_is_free_and_the_hash_is_stable(fashion, tmp_path):
    root, result = fashion
    again = ingest("fashion-mnist", root, progress=False)
    elsewhere = ingest("fashion-mnist", tmp_path, progress=False)
    assert result.manifest_hash == again.manifest_hash == elsewhere.manifest_hash
    assert not (tmp_path / "downloads" / "fashion-mnist").exists(), "read in place from the Debian package"
    assert all(p.name.endswith("-ubyte.gz") for p in DEBIAN.iterdir()), "nothing written into the package's folder"


def test_limit_per_class_keeps_both_official_splits(tmp_path):
    result = ingest("fashion-mnist", tmp_path, limit_per_class=20, seed=5, progress=False)
    frame = load_manifest("fashion-mnist", tmp_path).frame
    assert result.images == 400
    assert frame.groupby(["split", "label"]).size().eq(20).all()


def test_a_damaged_local_copy_is_refused(tmp_path):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    for path in DEBIAN.iterdir():
        (shelf / path.name).write_bytes(path.read_bytes())
    broken = bytearray((shelf / "train-labels-idx1-ubyte.gz").read_bytes())
    broken[100] ^= 0xFF
    (shelf / "train-labels-idx1-ubyte.gz").write_bytes(bytes(broken))
    spec = get_dataset("fashion-mnist")
    resource = next(r for r in spec.resources if r.filename == "train-labels-idx1-ubyte.gz")
    with pytest.raises(ChecksumMismatch, match=r"train-labels-idx1-ubyte.gz: checksum md5:\w+ differs from the pinned md5:25c8.* \(nor any of 1 other") as error:
        download.fetch(replace(resource, local_dirs=(str(shelf),)), "fashion-mnist", tmp_path / "dl", progress=False)
    # a package's file: reinstall it or download instead (it said "delete it and download again",
    # which featurestore itself never does with a file it did not download)
    assert "delete it" not in str(error.value) and "reinstall it" in str(error.value) and "--mirror" in str(error.value)
