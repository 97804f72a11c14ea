"""Full ingest of every registered layout, served by a loopback mirror from real-photo fixtures."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pandas as pd
import pytest

from featurestore.datasets import dataset_names, load_manifest
from featurestore.datasets.errors import ChecksumMismatch, ManifestNotFound, UnsafeArchive
from featurestore.datasets.manifest import COLUMNS
from featurestore.ingest import verify as verify_module
from featurestore.ingest.pipeline import ingest
from fixtures_datasets import LAYOUTS, jpeg


# Tested elsewhere on their own data: the Debian package's files, and a user's folder.
OWN_TESTS = {"fashion-mnist", "imagefolder"}


def test_every_registered_dataset_has_a_layout_fixture():
    assert set(dataset_names()) - OWN_TESTS == set(LAYOUTS)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_full_ingest_of_layout(name, root, serve_layout, loopback):
    fixture = serve_layout(name)
    result = ingest(name, root, checksums=fixture.checksums(), progress=False)

    manifest = load_manifest(name, root)
    frame = manifest.frame
    assert tuple(frame.columns) == COLUMNS
    assert result.images == len(frame) == fixture.images
    assert result.quarantined == fixture.quarantined
    assert frame["class_name"].nunique() == fixture.classes
    assert frame["id"].is_unique
    assert set(frame["split"]) <= {"train", "val", "test"}
    if fixture.splits is not None:
        assert frame["split"].value_counts().to_dict() == fixture.splits
    assert (frame["label"].map(lambda i: manifest.classes[i]) == frame["class_name"]).all()
    assert ((frame["fold"] >= 0) == (frame["split"] == "train")).all()
    for i in range(len(frame)):
        pixels = manifest.read_rgb(i)
        assert pixels.dtype == np.uint8 and pixels.shape == (frame["height"].iat[i], frame["width"].iat[i], 3)
        assert pixels.std() > 5, "a real photo, not a blank"
    assert manifest.hash == result.manifest_hash
    requests = len(loopback.requests)
    assert requests == len(fixture.files)

    # A rerun with the same parameters: no network, no decoding, same manifest.
    def no_decoding(path):
        raise AssertionError(f"{path} decoded again")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(verify_module, "inspect_file", no_decoding)
        again = ingest(name, root, checksums=fixture.checksums(), progress=False)
    assert len(loopback.requests) == requests
    assert again.manifest_hash == result.manifest_hash


def test_cub200_official_split_is_respected(root, serve_layout):
    fixture = serve_layout("cub200")
    ingest("cub200", root, checksums=fixture.checksums(), progress=False, ratios=(0.5, 0.25, 0.25), seed=7)
    frame = load_manifest("cub200", root).frame
    assert dict(zip(frame["id"], frame["split"])) == fixture.expected_split
    assert frame.loc[frame["class_name"] == "Black_footed_Albatross", "label"].unique().tolist() == [0]


def test_corrupt_files_are_quarantined_with_reasons(root, serve_layout):
    fixture = serve_layout("cats-vs-dogs")
    result = ingest("cats-vs-dogs", root, checksums=fixture.checksums(), progress=False)
    quarantine = pd.read_csv(result.quarantine, dtype=str, keep_default_na=False)
    reasons = dict(zip(quarantine["source"], quarantine["reason"]))
    assert set(reasons) == {"PetImages/Cat/666.jpg", "PetImages/Dog/11702.jpg", "PetImages/Dog/2317.jpg"}
    assert reasons["PetImages/Cat/666.jpg"].startswith("empty file")
    assert reasons["PetImages/Dog/11702.jpg"].startswith("truncated or corrupt")
    assert reasons["PetImages/Dog/2317.jpg"].startswith("not an image")
    frame = load_manifest("cats-vs-dogs", root).frame
    assert not frame["source"].isin(list(reasons)).any()
    assert not frame["source"].str.endswith("Thumbs.db").any()


def test_checksum_mismatch_leaves_no_dataset_behind(root, serve_layout, loopback):
    fixture = serve_layout("oxford-pets")
    loopback.files["/oxford-pets/images.tar.gz"] = fixture.files["annotations.tar.gz"]  # the wrong bytes
    with pytest.raises(ChecksumMismatch, match=r"images.tar.gz: .*differs from the pinned sha256:") as error:
        ingest("oxford-pets", root, checksums=fixture.checksums(), progress=False)
    assert "\n" not in str(error.value)
    assert not (root / "downloads" / "oxford-pets" / "images.tar.gz").exists()
    assert not list((root / "downloads" / "oxford-pets").glob("images.tar.gz*"))
    assert not (root / "datasets" / "oxford-pets" / "manifest.csv").exists()
    with pytest.raises(ManifestNotFound):
        load_manifest("oxford-pets", root)


def test_production_checksums_stay_pinned_on_a_mirror(root, serve_layout):
    """Without an explicit override, a mirror serving other bytes is refused: nothing is weakened."""
    serve_layout("cifar10")
    with pytest.raises(ChecksumMismatch, match="pinned md5:c58f30108f718f92721af3b95e74349a"):
        ingest("cifar10", root, progress=False)


def test_malicious_archive_from_a_url_is_refused(root, tmp_path, loopback):
    archive = tmp_path / "evil.tgz"
    with tarfile.open(archive, "w:gz") as bundle:
        for name, data in (("mine/a/1.jpg", jpeg(1)), ("mine/b/2.jpg", jpeg(2)), ("../../escape.txt", b"owned")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    url = loopback.serve("/evil.tgz", archive.read_bytes())
    with pytest.raises(UnsafeArchive, match="member '../../escape.txt' climbs out"):
        ingest("imagefolder", root, source=url, progress=False)
    assert not list(tmp_path.rglob("escape.txt"))
    assert not (root / "datasets" / "imagefolder" / "manifest.csv").exists()
