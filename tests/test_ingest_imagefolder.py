"""imagefolder ingest: image modes to RGB, quarantine, seeded stratified splits, folds, limits, errors."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import featurestore
from featurestore.datasets import load_manifest
from featurestore.datasets.errors import DatasetBusy, DatasetError, ManifestNotFound, UnknownDataset
from featurestore.errors import RootNotWritable
from featurestore.ingest.lock import ingesting
from featurestore.ingest.pipeline import build_manifest, fetch_files, ingest, prepare, verify
from fixtures_datasets import jpeg, photo, tar_bytes, zip_bytes


CLASSES = {"bird": 10, "cat": 20, "dog": 30}


def _photo_folder(base, classes=CLASSES):
    for c, (name, count) in enumerate(classes.items()):
        (base / name).mkdir(parents=True)
        for k in range(count):
            (base / name / f"{k:03d}.jpg").write_bytes(jpeg(100 * c + k))
    return base


@pytest.fixture
def folder(tmp_path):
    return _photo_folder(tmp_path / "photos")


def _ingest(root, source, **options):
    return ingest("imagefolder", root, source=str(source), progress=False, **options)


def test_every_image_mode_is_read_as_rgb(tmp_path, root):
    base = tmp_path / "modes"
    (base / "a").mkdir(parents=True)
    (base / "b").mkdir()
    colour = photo(3, (32, 24))
    colour.convert("L").save(base / "a" / "grey.png")
    colour.convert("CMYK").save(base / "a" / "cmyk.jpg")
    wide = (np.asarray(colour.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(wide).save(base / "a" / "sixteen.png")
    palette = colour.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(base / "b" / "palette.gif")
    rgba = colour.convert("RGBA")
    alpha = np.asarray(rgba).copy()
    alpha[:, :16, 3] = 0  # left half fully transparent
    Image.fromarray(alpha, "RGBA").save(base / "b" / "alpha.png")
    colour.save(base / "b" / "plain.jpg")

    _ingest(root, base)
    manifest = load_manifest("imagefolder", root)
    rows = {source.rsplit("/", 1)[1]: i for i, source in enumerate(manifest.frame["source"])}
    modes = dict(zip(manifest.frame["source"].str.rsplit("/", n=1).str[1], manifest.frame["mode"]))
    assert modes["grey.png"] == "L" and modes["cmyk.jpg"] == "CMYK" and modes["palette.gif"] == "P"
    assert modes["sixteen.png"].startswith("I") and modes["alpha.png"] == "RGBA"
    images = {name: manifest.read_rgb(i) for name, i in rows.items()}
    for name, pixels in images.items():
        assert pixels.dtype == np.uint8 and pixels.shape == (24, 32, 3), name
    grey = images["grey.png"]
    assert (grey[..., 0] == grey[..., 1]).all()
    # 16-bit values are scaled down to the same picture, not clipped to white.
    assert np.abs(images["sixteen.png"].astype(int) - grey.astype(int)).max() <= 1
    assert (images["alpha.png"][:, :16] == 255).all(), "transparent pixels composite on white"
    assert np.abs(images["alpha.png"][:, 16:].astype(int) - np.asarray(colour)[:, 16:]).max() <= 1
    assert np.abs(images["cmyk.jpg"].astype(int) - images["plain.jpg"].astype(int)).mean() < 12
    assert manifest.frame.loc[rows["plain.jpg"], "sha256"] == hashlib.sha256((base / "b" / "plain.jpg").read_bytes()).hexdigest()


def test_seeded_split_is_deterministic_and_stratified(tmp_path, folder):
    first = _ingest(tmp_path / "one", folder, seed=3)
    second = _ingest(tmp_path / "two", folder, seed=3)
    assert first.manifest_hash == second.manifest_hash
    assert (tmp_path / "one/datasets/imagefolder/manifest.csv").read_bytes() == \
        (tmp_path / "two/datasets/imagefolder/manifest.csv").read_bytes()
    other = _ingest(tmp_path / "three", folder, seed=4)
    assert other.manifest_hash != first.manifest_hash

    frame = load_manifest("imagefolder", tmp_path / "one").frame
    counts = frame.groupby(["class_name", "split"]).size().unstack()
    for name, total in CLASSES.items():
        assert counts.loc[name, "train"] == round(total * 0.7)
        assert counts.loc[name, "val"] == round(total * 0.15)
        assert counts.loc[name].sum() == total
    folds = frame[frame["split"] == "train"].groupby(["class_name", "fold"]).size().unstack()
    assert (folds.max(axis=1) - folds.min(axis=1) <= 1).all(), "each class spread evenly over the folds"
    assert (frame.loc[frame["split"] != "train", "fold"] == -1).all()
    order = frame["split"].map({"train": 0, "val": 1, "test": 2})
    assert order.is_monotonic_increasing


def test_custom_ratios_and_folds(root, folder):
    _ingest(root, folder, ratios=(0.5, 0.0, 0.5), folds=3)
    frame = load_manifest("imagefolder", root).frame
    assert set(frame["split"]) == {"train", "test"}
    assert sorted(frame.loc[frame["split"] == "train", "fold"].unique()) == [0, 1, 2]


def test_limit_per_class_is_reproducible(tmp_path, folder):
    a = _ingest(tmp_path / "a", folder, limit_per_class=6, seed=1)
    b = _ingest(tmp_path / "b", folder, limit_per_class=6, seed=1)
    assert a.images == 18 and a.manifest_hash == b.manifest_hash
    frame = load_manifest("imagefolder", tmp_path / "a").frame
    assert frame["class_name"].value_counts().to_dict() == {"bird": 6, "cat": 6, "dog": 6}


def test_corrupt_images_are_quarantined_not_fatal(root, folder):
    (folder / "cat" / "empty.jpg").write_bytes(b"")
    (folder / "cat" / "cut.jpg").write_bytes(jpeg(7)[:300])
    (folder / "dog" / "text.png").write_bytes(b"hello")
    result = _ingest(root, folder)
    assert result.quarantined == 3 and result.images == sum(CLASSES.values())


def test_files_not_images_by_their_extension_are_counted_and_named_not_dropped_silently(root, folder):
    # A .heic photo or a stray .txt in a class folder vanished without a word, in no count and no quarantine.csv.
    import json

    from featurestore.datasets.folders import skipped_note

    (folder / "cat" / "notes.txt").write_text("fed at 8")
    (folder / "dog" / "IMG_0001.heic").write_bytes(jpeg(3))
    (folder / "dog" / "IMG_0002.HEIC").write_bytes(jpeg(4))
    (folder / "dog" / "Thumbs.db").write_bytes(b"\0" * 64)  # what Windows adds: no user meant it as an image
    (folder / "dog" / ".DS_Store").write_bytes(b"\0" * 64)
    result = _ingest(root, folder)
    assert (result.images, result.quarantined, result.skipped) == (sum(CLASSES.values()), 0, 3)
    assert result.skipped_files == ["cat/notes.txt", "dog/IMG_0001.heic", "dog/IMG_0002.HEIC"]
    assert json.loads((Path(result.directory) / "dataset.json").read_text())["skipped"] == 3
    assert skipped_note(result.skipped, result.skipped_files) == (
        "3 files skipped (not an image extension: .heic, .txt), e.g. cat/notes.txt, dog/IMG_0001.heic, "
        "dog/IMG_0002.HEIC; docs/datasets.md lists the extensions read")
    assert skipped_note(7, ["a/x.txt"]) == ("7 files skipped (not an image extension: .txt, ...), e.g. a/x.txt, ...; "
                                            "docs/datasets.md lists the extensions read")


def test_an_image_removed_between_the_scan_and_verification_is_quarantined(root, folder):
    files = fetch_files("imagefolder", root, source=str(folder), progress=False)
    candidates = prepare("imagefolder", files, root)
    (folder / "cat" / "007.jpg").unlink()  # the user tidies the folder while the ingest runs
    result = build_manifest("imagefolder", verify(candidates), source=str(folder))
    assert (result.images, result.quarantined) == (sum(CLASSES.values()) - 1, 1)
    assert pd.read_csv(result.quarantine).to_dict("records") == [
        {"source": "images/cat/007.jpg", "class_name": "cat",
         "reason": "removed while the ingest ran (it was there when the folder was scanned)"}]


NOT_UTF8 = "file name is not valid UTF-8 (shown with \\xNN for the bytes that are not); rename it"


def test_an_image_whose_name_is_not_utf8_is_quarantined_and_the_ingest_goes_on(root, folder):
    # A name copied from an older system: latin-1 bytes, which os hands over as lone surrogates.
    (folder / os.fsdecode(b"cat/caf\xe9.jpg")).write_bytes(jpeg(900))
    result = _ingest(root, folder)
    assert (result.images, result.quarantined) == (sum(CLASSES.values()), 1)
    assert pd.read_csv(result.quarantine, keep_default_na=False).to_dict("records") == [
        {"source": "images/cat/caf\\xe9.jpg", "class_name": "cat", "reason": NOT_UTF8}]


def test_a_tar_member_whose_name_is_not_utf8_is_quarantined_like_a_file(tmp_path, root):
    members = {f"mine/{c}/{k}.jpg": jpeg(10 * j + k) for j, c in enumerate(["cat", "dog"]) for k in range(3)}
    members[os.fsdecode(b"mine/dog/\xe9t\xe9.jpg")] = jpeg(99)  # tarfile reads latin-1 bytes as surrogates
    archive = tmp_path / "latin.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    result = _ingest(root, archive)
    assert (result.images, result.quarantined) == (6, 1)
    assert pd.read_csv(result.quarantine, keep_default_na=False).to_dict("records") == [
        {"source": "images/mine/dog/\\xe9t\\xe9.jpg", "class_name": "dog", "reason": NOT_UTF8}]


def test_a_class_folder_whose_name_is_not_utf8_is_refused_in_one_line(root, folder):
    _photo_folder(folder, {os.fsdecode(b"f\xeate"): 3})  # a class folder copied from an older system
    with pytest.raises(DatasetError, match=r"class folder 'f\\xeate': its name is not valid UTF-8 \(shown with "
                       r"\\xNN for the bytes that are not\); rename it$") as error:
        _ingest(root, folder)
    assert "\n" not in str(error.value)


def test_a_broken_link_is_quarantined_with_its_reason_not_dropped(root, folder):
    (folder / "cat" / "gone.jpg").symlink_to(folder / "nowhere.jpg")
    result = _ingest(root, folder)
    assert result.quarantined == 1 and result.images == sum(CLASSES.values())
    quarantine = pd.read_csv(result.quarantine, keep_default_na=False)
    assert quarantine.to_dict("records") == [{"source": "images/cat/gone.jpg", "class_name": "cat",
                                              "reason": f"broken link (its target {folder / 'nowhere.jpg'} is missing)"}]


def test_copies_of_one_image_across_classes_or_splits_are_counted(root, folder):
    assert _ingest(root, folder).copies_across == 0
    (folder / "dog" / "copy.jpg").write_bytes((folder / "cat" / "000.jpg").read_bytes())  # one file, two labels
    result = _ingest(root, folder)
    assert result.copies_across == 2 and load_manifest("imagefolder", root).info["copies_across"] == 2


def test_classes_left_without_a_readable_image_are_dropped_and_named(root, folder):
    (folder / "empty").mkdir()
    (folder / "fish").mkdir()
    (folder / "fish" / "cut.jpg").write_bytes(jpeg(8)[:300])
    (folder / "__MACOSX" / "cat").mkdir(parents=True)
    result = _ingest(root, folder)
    assert result.empty_classes == ["empty", "fish"] and result.quarantined == 1
    manifest = load_manifest("imagefolder", root)
    assert manifest.classes == sorted(CLASSES)
    assert sorted(manifest.frame["label"].unique()) == [0, 1, 2]
    assert manifest.info["empty_classes"] == ["empty", "fish"]


def test_a_file_changed_in_the_folder_after_ingest_is_not_extracted_under_the_old_label(root, folder, caplog):
    from featurestore.extract import extract

    _ingest(root, folder, limit_per_class=3)
    frame = load_manifest("imagefolder", root).frame
    changed = folder / frame["id"].iat[1]
    changed.write_bytes(jpeg(999))  # still a valid JPEG: without the hash check it would be read
    with caplog.at_level("WARNING", logger="featurestore.extract.reader"):
        (result,) = extract("imagefolder", ["efficientnet_lite0"], root, batch_size=4, progress=False)
    assert (result.written, result.failed) == (9, 1)
    assert featurestore.load_arrays("imagefolder", "efficientnet_lite0", root=root).failed.tolist() == [
        False, True] + [False] * 7
    assert "changed since ingest" in caplog.text and "run `featurestore ingest` again" in caplog.text


def test_archive_source_and_url_source(tmp_path, loopback):
    members = {f"mine/{c}/{k}.jpg": jpeg(10 * j + k) for j, c in enumerate(["left", "right"]) for k in range(6)}
    data = tar_bytes(members)
    archive = tmp_path / "mine.tgz"
    archive.write_bytes(data)
    local = _ingest(tmp_path / "local", archive)
    url = loopback.serve("/files/mine.tgz", data)
    remote = _ingest(tmp_path / "remote", url)
    assert local.images == remote.images == 12
    assert local.manifest_hash == remote.manifest_hash
    assert load_manifest("imagefolder", tmp_path / "remote").classes == ["left", "right"]


def test_a_macos_zip_with_its_resource_forks_beside_the_wrapper_keeps_its_classes(tmp_path, root):
    # What Finder's "Compress" makes of a folder photos/{cat,dog}: AppleDouble files under __MACOSX/.
    members = {f"photos/{c}/{k}.jpg": jpeg(10 * j + k) for j, c in enumerate(["cat", "dog"]) for k in range(6)}
    members.update({f"__MACOSX/photos/{c}/._{k}.jpg": b"\0\5\26\7" + bytes(80) for c in ("cat", "dog")
                    for k in range(6)})
    archive = tmp_path / "mac.zip"
    archive.write_bytes(zip_bytes(members))
    result = _ingest(root, archive, name="mac")
    assert (result.images, result.quarantined) == (12, 0)
    assert load_manifest("mac", root).classes == ["cat", "dog"]


def test_name_keeps_several_folders_apart(root, folder, tmp_path):
    _ingest(root, folder, name="pets")
    assert len(load_manifest("pets", root)) == sum(CLASSES.values())
    with pytest.raises(ManifestNotFound, match=r"'imagefolder' \(ingested here: pets\); check the name, or run "
                       r"`featurestore ingest imagefolder --source DIR\|ARCHIVE\|URL` first"):
        load_manifest("imagefolder", root)
    # A name of the user's: `featurestore ingest nosuch`, which the advice named, is refused as unknown.
    with pytest.raises(ManifestNotFound, match=r"or run `featurestore ingest imagefolder --source DIR\|ARCHIVE\|URL "
                       "--name nosuch` first"):
        load_manifest("nosuch", root)
    with pytest.raises(ManifestNotFound, match="or run `featurestore ingest fashion-mnist` first"):
        load_manifest("fashion-mnist", root)


@pytest.mark.parametrize("layout, message", [
    ({}, "no images found in class sub-folders"),
    ({"only": 4}, "single class 'only'"),
])
def test_unusable_folders_are_clear_errors(tmp_path, root, layout, message):
    base = tmp_path / "bad"
    base.mkdir()
    (base / "notes.txt").write_text("no images here")
    _photo_folder(base / "inner", layout) if layout else (base / "empty").mkdir()
    with pytest.raises(DatasetError, match=message) as error:
        _ingest(root, base)
    assert "\n" not in str(error.value)


def test_bad_parameters_are_clear_errors(root, folder):
    with pytest.raises(DatasetError, match=r"split ratios \[0.5, 0.6, 0.1\] are invalid"):
        _ingest(root, folder, ratios=(0.5, 0.6, 0.1))
    with pytest.raises(DatasetError, match="needs --source"):
        ingest("imagefolder", root, progress=False)
    with pytest.raises(DatasetError, match="does not exist"):
        _ingest(root, folder / "nowhere")
    with pytest.raises(UnknownDataset, match="unknown dataset 'mnist': choose one of .*cifar10.*fashion-mnist"):
        ingest("mnist", root)


def test_read_rgb_batch_for_files(root, folder, tmp_path):
    _ingest(root, folder)
    manifest = load_manifest("imagefolder", root)
    batch = manifest.read_rgb_batch([0, 3, 7])
    assert batch.shape == (3, 40, 48, 3) and (batch[1] == manifest.read_rgb(3)).all()
    odd = tmp_path / "odd"
    for name, size in (("a", (48, 40)), ("b", (30, 20))):
        (odd / name).mkdir(parents=True)
        for k in range(2):
            (odd / name / f"{k}.jpg").write_bytes(jpeg(5 + k, size))
    _ingest(tmp_path / "r2", odd)
    mixed = load_manifest("imagefolder", tmp_path / "r2")
    with pytest.raises(DatasetError, match="2 different sizes"):
        mixed.read_rgb_batch(range(len(mixed)))


def test_verification_cache_survives_a_limited_run(root, folder, monkeypatch):
    from featurestore.ingest import verify as verify_module

    _ingest(root, folder)
    for path in (folder / "bird").iterdir():  # changed files must be decoded again
        path.write_bytes(path.read_bytes())
        os.utime(path, ns=(1, 1))
    _ingest(root, folder, limit_per_class=3)
    decoded = []
    real = verify_module.inspect_file
    monkeypatch.setattr(verify_module, "inspect_file", lambda path: decoded.append(path) or real(path))
    full = _ingest(root, folder)
    assert full.images == sum(CLASSES.values())
    assert len(decoded) == CLASSES["bird"] - 3 and all("/bird/" in p for p in decoded)


def _ppm_folder(base):
    """Two classes of 8x8 PPM photos: every file has the same size in bytes."""
    for j, name in enumerate(["cat", "dog"]):
        (base / name).mkdir(parents=True)
        for k in range(6):
            photo(10 * j + k, (8, 8)).save(base / name / f"{k}.ppm")
    return base


def test_a_file_replaced_with_the_same_size_and_mtime_is_verified_again(tmp_path, root):
    base = _ppm_folder(tmp_path / "ppm")
    _ingest(root, base, name="ppm")
    changed, replacement = base / "cat" / "0.ppm", tmp_path / "new.ppm"
    photo(99, (8, 8)).save(replacement)
    before = changed.stat()
    assert replacement.stat().st_size == before.st_size
    shutil.copyfile(replacement, changed)
    os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns))  # as cp -p, rsync -a or tar x leave it
    _ingest(root, base, name="ppm")
    manifest = load_manifest("ppm", root)
    row = manifest.frame.index[manifest.frame["source"] == "images/cat/0.ppm"][0]
    assert manifest.frame.at[row, "sha256"] == hashlib.sha256(replacement.read_bytes()).hexdigest()
    assert (manifest.read_rgb(row) == np.asarray(Image.open(replacement))).all()


def test_a_verification_cache_of_an_older_version_is_read_and_its_files_verified_again(tmp_path, root):
    base = _ppm_folder(tmp_path / "ppm")
    first = _ingest(root, base, name="ppm")
    cache = Path(first.directory) / ".verified.csv"
    # The cache an older featurestore wrote: keyed on source, size and mtime only.
    pd.read_csv(cache, keep_default_na=False).drop(columns=["ctime_ns", "inode"]).to_csv(cache, index=False)
    assert _ingest(root, base, name="ppm").manifest_hash == first.manifest_hash
    rows = pd.read_csv(cache, keep_default_na=False)
    assert len(rows) == 12 and (rows["inode"] > 0).all() and (rows["ctime_ns"] > 0).all()


def test_archive_after_a_folder_under_the_same_name_replaces_the_link_not_the_folder(tmp_path, root, folder):
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    _ingest(root, folder, name="pets")
    archive = tmp_path / "two.tgz"
    archive.write_bytes(tar_bytes({f"{c}/{k}.jpg": jpeg(10 * j + k) for j, c in enumerate(["cat", "fox"])
                                   for k in range(3)}))
    result = _ingest(root, archive, name="pets")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before, "the user's folder is untouched"
    assert (result.images, load_manifest("pets", root).classes) == (6, ["cat", "fox"])
    assert not (root / "datasets" / "pets" / "images").is_symlink()


def test_a_different_archive_under_the_same_name_replaces_the_old_one(tmp_path, root):
    old, new, cut = tmp_path / "old.tgz", tmp_path / "new.tgz", tmp_path / "cut.tgz"
    old.write_bytes(tar_bytes({f"{c}/{k}.jpg": jpeg(10 * j + k) for j, c in enumerate(["cat", "dog"]) for k in range(3)}))
    new.write_bytes(tar_bytes({f"{c}/{k}.jpg": jpeg(50 + 10 * j + k) for j, c in enumerate(["bird", "fish"])
                               for k in range(6)}))
    cut.write_bytes(new.read_bytes()[:900])
    _ingest(root, old, name="pets")
    result = _ingest(root, new, name="pets")
    assert (result.images, load_manifest("pets", root).classes) == (12, ["bird", "fish"])
    with pytest.raises(DatasetError, match="cut.tgz: cannot be unpacked"):
        _ingest(root, cut, name="pets")
    assert len(load_manifest("pets", root)) == 12, "a failed unpack leaves the dataset as it was"


def test_a_registered_dataset_name_is_refused_as_name(root, folder):
    with pytest.raises(DatasetError, match="--name 'fashion-mnist' is a registered dataset's name; pick another") as error:
        _ingest(root, folder, name="fashion-mnist")
    assert "\n" not in str(error.value)
    assert not (root / "datasets" / "fashion-mnist").exists()


def test_a_zero_test_ratio_is_refused_before_anything_is_written(root, folder):
    with pytest.raises(DatasetError, match=r"split ratios \[1, 0, 0\] are invalid: .*train and test above 0") as error:
        _ingest(root, folder, ratios=(1, 0, 0))
    assert "\n" not in str(error.value)
    assert not (root / "datasets").exists()


def _dataset_state(directory):
    """What a failed ingest must leave alone: the images (link target and files), manifest and dataset.json."""
    images = directory / "images"
    return (os.readlink(images) if images.is_symlink() else None,
            sorted(p.relative_to(images).as_posix() for p in images.rglob("*")),
            (directory / "manifest.csv").read_bytes(), (directory / "dataset.json").read_bytes())


def _sources(tmp_path, folder):
    """A good folder and archive, and a folder and archive that unpack fine but hold a single class."""
    good_archive, bad_archive = tmp_path / "two.tgz", tmp_path / "one.tgz"
    good_archive.write_bytes(tar_bytes({f"{c}/{k}.jpg": jpeg(10 * j + k) for j, c in enumerate(["cat", "fox"])
                                        for k in range(3)}))
    bad_archive.write_bytes(tar_bytes({f"bird/{k}.jpg": jpeg(70 + k) for k in range(2)}))
    bad_folder = _photo_folder(tmp_path / "one", {"bird": 2})
    return {"folder": folder, "archive": good_archive}, {"folder": bad_folder, "archive": bad_archive}


@pytest.mark.parametrize("first, second", [("folder", "folder"), ("folder", "archive"), ("archive", "archive"),
                                           ("archive", "folder")])
def test_an_ingest_that_fails_after_unpacking_leaves_the_dataset_as_it_was(tmp_path, root, folder, first, second):
    good, bad = _sources(tmp_path, folder)
    directory = root / "datasets" / "pets"
    digest = _ingest(root, good[first], name="pets").manifest_hash
    before = _dataset_state(directory)
    with pytest.raises(DatasetError, match="single class 'bird'"):
        _ingest(root, bad[second], name="pets")
    assert _dataset_state(directory) == before
    assert not (directory / ".next").exists(), "nothing staged is left behind"
    assert _ingest(root, good[first], name="pets").manifest_hash == digest


def test_a_folder_after_an_archive_under_the_same_name_replaces_the_unpacked_copy(tmp_path, root, folder):
    good, _ = _sources(tmp_path, folder)
    _ingest(root, good["archive"], name="pets")
    result = _ingest(root, folder, name="pets")
    assert (result.images, load_manifest("pets", root).classes) == (sum(CLASSES.values()), sorted(CLASSES))
    assert os.readlink(root / "datasets" / "pets" / "images") == str(folder)
    assert not list((root / "datasets" / "pets").glob(".old-*")), "the unpacked copy is gone"


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_images_featurestore_did_not_unpack_are_never_replaced(tmp_path, root, folder, kind):
    good, _ = _sources(tmp_path, folder)
    own = _photo_folder(root / "datasets" / "pets" / "images", {"owl": 2, "emu": 2})
    before = sorted(p.relative_to(own) for p in own.rglob("*"))
    with pytest.raises(DatasetError, match=r"pets/images holds files featurestore did not unpack, which it will not "
                       r"delete; move them to a folder of your own and ingest that with --source, or pick another "
                       r"--name$") as error:
        _ingest(root, good[kind], name="pets")
    assert "\n" not in str(error.value)
    assert sorted(p.relative_to(own) for p in own.rglob("*")) == before


def test_what_the_refusal_of_images_featurestore_did_not_unpack_advises_works(tmp_path, root):
    own = _photo_folder(root / "datasets" / "pets" / "images", {"owl": 6, "emu": 6})
    with pytest.raises(DatasetError, match="did not unpack"):
        _ingest(root, own, name="pets")  # those very files, under the same name: still refused
    assert _ingest(root, own, name="birds").images == 12  # another --name
    moved = tmp_path / "mine"
    own.rename(moved)
    assert _ingest(root, moved, name="pets").images == 12  # moved to a folder of the user's own
    assert load_manifest("pets", root).classes == ["emu", "owl"]


def test_the_manifest_is_the_last_file_to_move_into_place(tmp_path, root, folder):
    good, _ = _sources(tmp_path, folder)
    directory = Path(_ingest(root, folder, name="pets").directory)
    manifest = (directory / "manifest.csv").read_bytes()
    (directory / "dataset.json").unlink()
    (directory / "dataset.json").mkdir()  # the rename of the new dataset.json onto it fails
    with pytest.raises(IsADirectoryError):
        _ingest(root, good["archive"], name="pets")
    # Stopped before dataset.json moved: the manifest, which stores and extract key on, is still the old one.
    assert (directory / "manifest.csv").read_bytes() == manifest
    (directory / "dataset.json").rmdir()
    assert _ingest(root, good["archive"], name="pets").images == 6, "ingesting again completes the swap"
    assert load_manifest("pets", root).classes == ["cat", "fox"]


def test_a_new_url_with_the_same_file_name_is_ingested_not_the_old_download(tmp_path, root, loopback):
    old = loopback.serve("/v1/small.tgz", tar_bytes({f"{c}/{k}.jpg": jpeg(10 * j + k)
                                                     for j, c in enumerate(["cat", "dog"]) for k in range(3)}))
    new = loopback.serve("/v2/small.tgz", tar_bytes({f"{c}/{k}.jpg": jpeg(50 + 10 * j + k)
                                                     for j, c in enumerate(["bird", "fish"]) for k in range(3)}))
    _ingest(root, old, name="web")
    _ingest(root, new, name="web")
    assert load_manifest("web", root).classes == ["bird", "fish"]
    assert [path for path, _ in loopback.requests] == ["/v1/small.tgz", "/v2/small.tgz"]
    # v1 changes on the server: going back to it ingests v1's first download, which v2 did not replace.
    loopback.serve("/v1/small.tgz", tar_bytes({f"{c}/{k}.jpg": jpeg(90 + 10 * j + k)
                                              for j, c in enumerate(["owl", "emu"]) for k in range(3)}))
    _ingest(root, old, name="web")
    assert load_manifest("web", root).classes == ["cat", "dog"]
    assert [path for path, _ in loopback.requests] == ["/v1/small.tgz", "/v2/small.tgz"]


@pytest.mark.parametrize("per_class, ratios, fix", [
    (4, (0.7, 0.15, 0.15), r"give --ratios with a larger test share \(e.g. 0.6,0.2,0.2\)"),
    (1, (0.5, 0.25, 0.25), "add images: a class needs at least 2, one to train on and one to test"),
])
def test_a_split_that_leaves_the_test_split_empty_is_refused_and_changes_nothing(tmp_path, root, folder, per_class,
                                                                                ratios, fix):
    _ingest(root, folder, name="pets")
    before = _dataset_state(root / "datasets" / "pets")
    small = _photo_folder(tmp_path / "small", {"cat": per_class, "coffee": per_class})
    shown = ",".join(f"{r:g}" for r in ratios)
    with pytest.raises(DatasetError, match=rf"pets: the test split would be empty \(images per class: cat {per_class}, "
                       rf"coffee {per_class}; ratios {shown}\), and evaluate scores on it; .*{fix}") as error:
        _ingest(root, small, name="pets", ratios=ratios)
    assert "\n" not in str(error.value)
    assert _dataset_state(root / "datasets" / "pets") == before


def test_images_in_a_linked_sub_folder_are_ingested_and_a_link_loop_is_quarantined(tmp_path, root, folder):
    extra = tmp_path / "extra"
    extra.mkdir()
    for k in range(4):
        (extra / f"{k}.jpg").write_bytes(jpeg(500 + k))
    (folder / "cat" / "more").symlink_to(extra, target_is_directory=True)
    (folder / "cat" / "nested").mkdir()
    (folder / "cat" / "nested" / "again").symlink_to(extra, target_is_directory=True)
    (folder / "dog" / "loop").symlink_to("..", target_is_directory=True)
    (folder / "dog" / "also").symlink_to(extra, target_is_directory=True)  # the same images under another class
    result = _ingest(root, folder)
    counts = load_manifest("imagefolder", root).frame["class_name"].value_counts().to_dict()
    assert counts == dict(CLASSES, cat=CLASSES["cat"] + 4)
    reasons = pd.read_csv(result.quarantine).to_dict("records")
    assert reasons == [
        {"source": "images/cat/nested/again", "class_name": "cat",
         "reason": f"link to a folder already scanned ({extra}): a loop or a second way to the same images, skipped"},
        {"source": "images/dog/also", "class_name": "dog",
         "reason": f"link to a folder already scanned ({extra}): a loop or a second way to the same images, skipped"},
        {"source": "images/dog/loop", "class_name": "dog",
         "reason": "link to a folder already scanned (..): a loop or a second way to the same images, skipped"},
    ]


@pytest.mark.parametrize("linked, target", [("bird", "dog"), ("dog", "bird"), ("bird", "cat/deep")])
def test_a_link_into_another_class_folder_is_quarantined_whichever_class_comes_first(root, folder, linked, target):
    (folder / "cat" / "deep").mkdir()
    for name in ("000.jpg", "001.jpg"):
        (folder / "cat" / name).rename(folder / "cat" / "deep" / name)
    (folder / linked / "dup").symlink_to(f"../{target}", target_is_directory=True)
    result = _ingest(root, folder)
    counts = load_manifest("imagefolder", root).frame["class_name"].value_counts().to_dict()
    assert counts == CLASSES, f"the images of {target} are not taken in under {linked!r} too"
    assert pd.read_csv(result.quarantine).to_dict("records") == [
        {"source": f"images/{linked}/dup", "class_name": linked, "reason": f"link to a folder already scanned "
         f"(../{target}): a loop or a second way to the same images, skipped"}]


def test_a_damaged_archive_of_the_users_is_not_to_be_deleted_but_a_download_is(tmp_path, root, loopback):
    data = tar_bytes({f"{c}/{k}.jpg": jpeg(10 * j + k) for j, c in enumerate(["cat", "dog"]) for k in range(6)})
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(data[:900])
    with pytest.raises(DatasetError, match=r"cut.tgz: cannot be unpacked \(.*\); the archive is damaged or incomplete; "
                       "check it, or replace it with a complete copy, and ingest again") as error:
        _ingest(root, cut)
    assert "delete it" not in str(error.value) and cut.read_bytes() == data[:900]
    url = loopback.serve("/files/cut.tgz", data[:900])
    with pytest.raises(DatasetError, match=r"downloads/imagefolder/[0-9a-f]{12}/cut.tgz: cannot be unpacked \(.*\); this download "
                       "was deleted with its hash"):
        _ingest(root, url)


def test_a_second_ingest_of_a_dataset_being_ingested_is_refused_and_changes_nothing(root, folder, tmp_path):
    first = _ingest(root, folder, name="pets")
    before = _dataset_state(Path(first.directory))
    other = _photo_folder(tmp_path / "other", {"owl": 6, "fox": 6})
    with ingesting(Path(first.directory)):  # another process is ingesting 'pets' right now
        with pytest.raises(DatasetBusy, match=r"pets: another process \(pid \d+\) is ingesting this dataset; wait"):
            _ingest(root, other, name="pets")
    assert _dataset_state(Path(first.directory)) == before
    assert not (Path(first.directory) / ".ingest.lock").exists()
    assert _ingest(root, other, name="pets").classes == 2  # once it is done, the next ingest runs


def test_an_ingest_lock_that_cannot_be_opened_says_it_is_the_ingest_lock(tmp_path):
    # Before: "cannot open the store's lock file" for the lock of a dataset being ingested.
    directory = tmp_path / "datasets" / "pets"
    (directory / ".ingest.lock").mkdir(parents=True)  # unopenable for writing, even by root
    with pytest.raises(RootNotWritable, match=rf"^{directory}/.ingest.lock: cannot open this lock file for writing "
                       r"\(Is a directory\), and ingesting this dataset needs it; ") as error:
        with ingesting(directory):
            pass
    assert not re.search(r"\bstore", str(error.value))


def test_a_dataset_json_of_another_manifest_is_refused_not_read_with_its_class_names(tmp_path, root, folder):
    good, _ = _sources(tmp_path, folder)
    pets = Path(_ingest(root, folder, name="pets").directory)
    other = Path(_ingest(root, good["archive"], name="other").directory)
    # What an ingest stopped between its two renames leaves: the new dataset.json beside the old manifest.
    shutil.copyfile(other / "dataset.json", pets / "dataset.json")
    with pytest.raises(DatasetError, match=r"pets/manifest.csv: damaged or missing \(its SHA-256 is not the one "
                                           r"dataset.json records: .*, or an ingest was stopped while moving the two "
                                           r"into place\); run `featurestore ingest imagefolder --source "
                                           rf"{good['archive']} --name pets` again$"):
        load_manifest("pets", root)
    assert _ingest(root, folder, name="pets").classes == 3 and load_manifest("pets", root).classes == sorted(CLASSES)


def test_a_manifest_cut_short_is_listed_damaged_with_both_causes_and_the_command(root, folder):
    # It was listed as a good dataset, and the message blamed a stopped ingest and gave no command.
    from featurestore.datasets.manifest import current_manifest_hash

    directory = Path(_ingest(root, folder, name="pets").directory)
    manifest = directory / "manifest.csv"
    manifest.write_bytes(manifest.read_bytes()[:1500])
    problem = (rf"^{manifest}: damaged or missing \(its SHA-256 is not the one dataset.json records: it was changed "
               r"or cut short since ingest, or an ingest was stopped while moving the two into place\); run "
               rf"`featurestore ingest imagefolder --source {folder} --name pets` again$")
    with pytest.raises(DatasetError, match=problem):
        load_manifest("pets", root)
    assert current_manifest_hash("pets", root) is None
    row = _datasets_json(root)["pets"]
    assert row["ingested"] == "damaged" and re.match(problem, row["problem"])


def test_a_dataset_that_lost_its_manifest_is_listed_damaged_and_its_stores_say_so(root, folder):
    # It vanished from `featurestore datasets` without a word, and ls and verify called its stores complete and ok.
    from store_fixtures import write_store

    from featurestore.store.catalog import catalog
    from featurestore.store.verify import verify_stores

    directory = Path(_ingest(root, folder, name="pets").directory)
    write_store(root, n=30, dataset="pets", manifest_hash=load_manifest("pets", root).hash)
    (directory / "manifest.csv").unlink()
    problem = (f"{directory}/manifest.csv: damaged or missing (not there, though dataset.json is); run "
               f"`featurestore ingest imagefolder --source {folder} --name pets` again")
    with pytest.raises(DatasetError) as error:
        load_manifest("pets", root)
    assert str(error.value) == problem
    row = _datasets_json(root)["pets"]
    assert (row["ingested"], row["problem"]) == ("damaged", problem)
    assert _datasets(root).stderr == f"warning: {problem}\n"
    (entry,) = catalog(root, "pets").to_dict("records")
    assert entry["problem"] == f"whether it is stale cannot be told: {problem}"
    (check,) = verify_stores(root, "pets")
    assert check.warnings == [entry["problem"]]
    (directory / "dataset.json").unlink()  # quarantine.csv, written with them, is left: still damaged
    assert _datasets_json(root)["pets"]["problem"] == (
        f"{directory}/dataset.json: damaged or missing (not there, though quarantine.csv is); run "
        "`featurestore ingest imagefolder --source DIR|ARCHIVE|URL --name pets` again")


def test_a_new_folder_or_a_first_ingest_under_way_is_not_listed_damaged(root):
    for name, entries in {"empty": (), "started": (".ingest", ".next"), "unpacked": (".unpacked", "photos")}.items():
        for entry in entries:
            (root / "datasets" / name / entry).mkdir(parents=True)
        (root / "datasets" / name).mkdir(parents=True, exist_ok=True)
        with pytest.raises(ManifestNotFound):
            load_manifest(name, root)
    assert not {"empty", "started", "unpacked"} & set(_datasets_json(root))


def test_a_class_folder_linked_to_another_class_is_refused(root, folder):
    (folder / "kitten").symlink_to(folder / "cat", target_is_directory=True)
    with pytest.raises(DatasetError, match=r"class folder 'kitten' is a link to the images of class 'cat' .*; "
                                           "replace the link with a folder of its own images"):
        _ingest(root, folder)
    assert not (root / "datasets" / "imagefolder" / "manifest.csv").exists()


def _datasets(root, *options):
    import typer
    from typer.testing import CliRunner

    from featurestore.cli.datasets_commands import register

    app = typer.Typer()
    register(app)
    listed = CliRunner().invoke(app, ["datasets", "--root", str(root), *options])
    assert listed.exit_code == 0, listed.output
    return listed


def _datasets_json(root):
    import json

    return {row["name"]: row for row in json.loads(_datasets(root, "--json").stdout)}


@pytest.mark.parametrize("content, reason", [
    ("{not json", r"not JSON: Expecting property name"), ("[1, 2]", "not a JSON object"),
    ('{"classes": 5, "manifest_sha256": 7}', "its 'classes' is not a JSON array"),
    (None, "not there, though manifest.csv is"),
])
def test_a_damaged_or_missing_dataset_json_is_one_line_naming_it_and_the_ingest(root, folder, content, reason):
    # Each was a traceback from `datasets`, `extract` and `run`; a missing one read "no manifest" (walk30 3, 15).
    from featurestore.datasets.manifest import current_manifest_hash

    for name in ("imagefolder", "pets"):  # a registered name and one of the user's
        info = Path(_ingest(root, folder, name=name).directory) / "dataset.json"
        info.unlink() if content is None else info.write_text(content)
    fix = "; run `featurestore ingest imagefolder --source DIR|ARCHIVE|URL --name pets` again"
    with pytest.raises(DatasetError, match=rf"^{root}/datasets/pets/dataset.json: damaged or missing \({reason}.*\)"
                                           rf"{re.escape(fix)}$") as error:
        load_manifest("pets", root)
    assert "\n" not in str(error.value) and current_manifest_hash("pets", root) is None
    rows = _datasets_json(root)  # listed as damaged, with the problem, and the other datasets still listed
    assert {name: (rows[name]["ingested"], rows[name]["problem"]) for name in ("imagefolder", "pets")} == {
        "imagefolder": ("damaged", str(pytest.raises(DatasetError, load_manifest, "imagefolder", root).value)),
        "pets": ("damaged", str(error.value))}
    assert "problem" not in rows["cifar10"]
    # The table shows "damaged"; why, and the command that repairs it, follow on stderr.
    assert _datasets(root).stderr == "".join(f"warning: {rows[name]['problem']}\n" for name in ("imagefolder", "pets"))
    assert _ingest(root, folder, name="pets").classes == 3 and len(load_manifest("pets", root)) == 60


def _rewrite_manifest(directory, change):
    """Apply ``change`` to the rows of the manifest in ``directory``, with dataset.json agreeing."""
    import json

    from featurestore.datasets.manifest import manifest_bytes

    frame = change(pd.read_csv(directory / "manifest.csv", dtype=str, keep_default_na=False))
    data = frame if isinstance(frame, bytes) else manifest_bytes(frame)
    (directory / "manifest.csv").write_bytes(data)
    info = json.loads((directory / "dataset.json").read_text())
    (directory / "dataset.json").write_text(json.dumps(dict(info, manifest_sha256=hashlib.sha256(data).hexdigest())))


@pytest.mark.parametrize("change, reason", [
    (lambda f: b"garbage,,,\n", r"columns \['garbage', .*\] are not \['id', 'source'"),
    (lambda f: f.assign(label="x"), "not a manifest: .*'x'"),
    (lambda f: f.assign(label="99"), "label 99 but 3 classes in dataset.json"),
    (lambda f: f.assign(split="bogus"), "split 'bogus' is not one of train, val, test"),
    (lambda f: pd.concat([f, f.head(1)]), r"image id '[^']+' appears more than once"),
])
def test_a_damaged_manifest_is_one_line_naming_it_and_not_an_earlier_manifest(root, folder, change, reason):
    # Listed `stale` ("built from an earlier manifest"), or "row table: ..." naming neither file nor fix (walk30 14).
    from featurestore.datasets.manifest import current_manifest_hash

    directory = Path(_ingest(root, folder, name="pets").directory)
    _rewrite_manifest(directory, change)
    with pytest.raises(DatasetError, match=rf"^{directory}/manifest.csv: damaged or missing \({reason}.*\); run "
                                           r"`featurestore ingest imagefolder --source .* --name pets` again$") as error:
        load_manifest("pets", root)
    assert "\n" not in str(error.value) and "np.str_" not in str(error.value)
    assert current_manifest_hash("pets", root) is None  # no current manifest for a store to be stale against


def test_a_manifest_the_csv_parser_rejects_without_a_message_is_one_line_naming_the_error(root, folder, monkeypatch):
    # The parser error's first line was taken as given: an empty message raised IndexError instead.
    from featurestore.datasets import manifest

    def rejected(*args, **kwargs):
        raise ValueError()

    directory = Path(_ingest(root, folder, name="pets").directory)
    monkeypatch.setattr(manifest.pd, "read_csv", rejected)
    with pytest.raises(DatasetError, match=rf"^{directory}/manifest.csv: damaged or missing \(not a manifest: "
                                           r"ValueError\); run "):
        load_manifest("pets", root)


@pytest.fixture
def second_source(monkeypatch):
    """A second dataset made from a user's --source, registered for this test only."""
    from dataclasses import replace

    from featurestore.datasets import registry

    registry.dataset_names()  # the built-ins first, so that the copy below keeps them
    monkeypatch.setattr(registry.DATASETS, "_entries", dict(registry.DATASETS._entries))
    return registry.register(replace(registry.get_dataset("imagefolder"), name="photolist",
                                     homepage="https://example.org/photolist"))


def test_messages_and_commands_name_each_dataset_that_takes_a_source(root, folder, second_source):
    # They named imagefolder whatever dataset a user's images came through (review43 A5).
    import json

    from featurestore.ingest.recorded import pipeline_ingest
    from featurestore.ingest.request import target_name

    with pytest.raises(DatasetError, match=r"^--name 'mine' applies only to 'imagefolder' or 'photolist'; "):
        target_name("cifar10", "mine")
    with pytest.raises(UnknownDataset, match=r"run `featurestore ingest imagefolder\|photolist --source DIR --name "
                                             "nosuch` first$"):
        pipeline_ingest("nosuch", root)
    with pytest.raises(ManifestNotFound, match=r"run `featurestore ingest photolist --source DIR\|ARCHIVE\|URL` first$"):
        load_manifest("photolist", root)
    directory = Path(ingest("photolist", root, source=str(folder), name="mine", progress=False).directory)
    assert json.loads((directory / "dataset.json").read_text())["homepage"] == "https://example.org/photolist"
    assert _datasets_json(root)["mine"]["homepage"] == "https://example.org/photolist"
    _rewrite_manifest(directory, lambda f: f.assign(split="bogus"))
    # with the source that dataset.json records
    with pytest.raises(DatasetError, match=rf"; run `featurestore ingest photolist --source {folder} --name mine` again$"):
        load_manifest("mine", root)


def test_an_empty_root_a_long_name_and_files_where_directories_belong_are_one_line(root, folder, tmp_path):
    # `--root ""` made the current directory a root; a 300-character name or a file at
    # <root>/datasets/<name> or <root>/stores ended in a traceback (walk30 9, 5, 4).
    from featurestore.errors import InvalidName, InvalidOption, RootNotWritable
    from featurestore.paths import check_root, existing_root, resolve_root

    with pytest.raises(InvalidOption, match=r"^--root '': give a directory, or leave --root out"):
        resolve_root("")
    with pytest.raises(InvalidName, match=r"^invalid dataset name 'xxx.*': use up to 100 letters"):
        _ingest(root, folder, name="x" * 300)
    assert _ingest(root, folder, name="x" * 100).images == 60
    (root / "datasets" / "pets").write_text("x")
    with pytest.raises(RootNotWritable, match=rf"^{root}/datasets/pets is a file where featurestore keeps a "
                                              "directory; move it away$"):
        _ingest(root, folder, name="pets")
    assert (root / "datasets" / "pets").read_text() == "x"
    for name in ("stores", "runs", "datasets"):
        other = tmp_path / f"with-{name}"
        other.mkdir()
        (other / name).write_text("x")
        for check in (check_root, existing_root):
            with pytest.raises(RootNotWritable, match=rf"^{other}/{name} is a file where featurestore keeps a "
                                                      "directory; move it away$"):
                check(other)
    with pytest.raises(RootNotWritable, match=rf"^{other}/datasets is a file where"):
        _ingest(other, folder)


def test_a_failed_first_ingest_names_the_source_and_leaves_no_dataset_behind(root, folder, tmp_path):
    # It named datasets/<name>/.next/images and left an empty datasets/<name>/ (walk30 19).
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match=rf"^{empty}: no images found in class sub-folders"):
        _ingest(root, empty, name="pets")
    assert list((root / "datasets").iterdir()) == []
    before = _dataset_state(Path(_ingest(root, folder, name="pets").directory))
    with pytest.raises(DatasetError, match=rf"^{empty}: no images found"):
        _ingest(root, empty, name="pets")
    assert _dataset_state(root / "datasets" / "pets") == before  # one that was there stays as it was


def test_a_registered_name_in_other_case_is_refused_as_name(root, folder):
    # It would share the registered dataset's folder on a case-insensitive file system (walk30 21).
    with pytest.raises(DatasetError, match="--name 'FASHION-MNIST' is a registered dataset's name; pick another"):
        _ingest(root, folder, name="FASHION-MNIST")
    assert not (root / "datasets").exists()
