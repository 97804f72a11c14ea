"""The ingest steps as plain functions, exchanging paths: fetch -> prepare -> verify -> manifest.

``tasks/ingest.py`` wraps each step as a Prefect task; ``ingest()`` runs them in order without
Prefect. Intermediate tables live in ``<dataset dir>/.ingest/`` as ``.npz`` files of plain arrays.
New images, their verification cache and the new manifest are staged in ``<dataset dir>/.next/``
and moved into place together at the end, so an ingest that fails leaves the dataset as it was.
The request is checked in ``request.py`` and the verified rows in ``manifest_checks.py``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from featurestore.datasets.arrays import ARRAY_FILE
from featurestore.datasets.errors import DatasetError, UnsafeArchive
from featurestore.datasets.folders import skipped_examples
from featurestore.datasets.manifest import ARRAY_SEPARATOR, INFO_FILE, MANIFEST_FILE, QUARANTINE_FILE, write_manifest
from featurestore.datasets.registry import Layout, get_dataset
from featurestore.datasets.sources import (
    IMAGES, attach_folder, is_attached, is_url, local_source, recorded_source, source_resource,
)
from featurestore.ingest.download import confirm, discard, fetch, never_used
from featurestore.ingest.lock import ingesting
from featurestore.ingest.manifest_checks import check_test_split, check_usable, copies_across, labelled
from featurestore.ingest.request import check_request, check_source, target_name
from featurestore.ingest.split import (
    DEFAULT_FOLDS, DEFAULT_RATIOS, assign_folds, assign_splits, check_ratios, limit_per_class,
)
from featurestore.ingest.tables import load_table, save_table
from featurestore.ingest.unpack import REDOWNLOAD, is_unpacked, swap_in, unpack, unpacked_here
from featurestore.ingest.verify import CACHE_FILE, verify_array, verify_files
from featurestore.paths import dataset_dir, downloads_dir

WORK = ".ingest"
STAGE = ".next"
# How an unpack error of a download never used ends: the download is gone, not pinned.
_DISCARDED = ("this download was deleted with its hash; check that the server sends the archive, then run "
              "ingest again to download it again")


@dataclass(frozen=True)
class IngestResult:
    """What an ingest produced: where the manifest is, its hash, and what was set aside: images
    quarantined, and files ``skipped`` in the class folders as not images by their extension (a few
    of them named in ``skipped_files``, see ``skipped_note``)."""

    dataset: str
    directory: str
    manifest: str
    manifest_hash: str
    images: int
    classes: int
    quarantined: int
    quarantine: str
    empty_classes: list[str] = field(default_factory=list)
    copies_across: int = 0
    skipped: int = 0
    skipped_files: list[str] = field(default_factory=list)


def fetch_files(dataset: str, root: str | os.PathLike[str] | None = None, *, source: str | None = None,
                mirror: str | None = None, checksums: Mapping[str, str] | None = None,
                name: str | None = None, progress: bool = True) -> dict[str, str]:
    """Download (or find locally) every file of ``dataset``; return ``{filename: verified path}``.

    ``checksums`` maps file names to ``"md5:…"``/``"sha256:…"`` replacing the pinned ones, for a
    mirror that carries other bytes (test fixtures) or to pin a user's source URL.
    """
    spec = get_dataset(dataset)
    overrides = dict(checksums or {})
    store_as = target_name(dataset, name)
    check_source(dataset, source)
    if spec.needs_source:
        if is_url(source):
            resource = source_resource(source)
            resource = replace(resource, checksum=overrides.get(resource.filename))
            path = fetch(resource, store_as, downloads_dir(root) / store_as, progress=progress)
        else:
            path = local_source(source)
        return {"source": str(path)}
    directory = downloads_dir(root) / dataset
    return {
        r.filename: str(fetch(r, dataset, directory, mirror=mirror, checksum=overrides.get(r.filename),
                              progress=progress))
        for r in spec.resources
    }


def prepare(dataset: str, files: Mapping[str, str], root: str | os.PathLike[str] | None = None,
            name: str | None = None) -> str:
    """Unpack the fetched files and read the dataset's layout; return the candidates table's path.

    A user's source is staged in ``<dataset dir>/.next/images`` unless ``images`` holds it already:
    the dataset's own images change only when ``build_manifest`` has built the new manifest.
    """
    spec = get_dataset(dataset)
    directory = dataset_dir(target_name(dataset, name), root)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {key: Path(value) for key, value in files.items()}
    stage = directory / STAGE
    # What an earlier ingest left staged, it left because it failed or was stopped.
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    for resource in spec.resources:
        if resource.unpack:
            _unpack_download(paths[resource.filename], directory)
    with _discarded_on_error(stage):
        base = _stage_source(paths["source"], directory, stage, root) if spec.needs_source else directory
        layout: Layout = spec.reader(base, paths)
    (directory / WORK).mkdir(exist_ok=True)
    return save_table(directory / WORK / "candidates.npz", layout.frame,
                      {"classes": list(layout.classes), "arrays": layout.arrays, "base": str(base),
                       "skipped": list(layout.skipped)})


def _stage_source(source: Path, directory: Path, stage: Path, root: str | os.PathLike[str] | None) -> Path:
    """Stage a user's folder (a link) or archive (unpacked) as ``stage/images``; return the folder
    the candidates' paths are relative to: ``stage``, or ``directory`` when it holds ``source`` already."""
    images = directory / IMAGES
    if images.is_dir() and not images.is_symlink() and not unpacked_here(images):
        raise DatasetError(f"{images} holds files featurestore did not unpack, which it will not delete; move them "
                           "to a folder of your own and ingest that with --source, or pick another --name")
    if source.is_dir():
        if is_attached(source, directory):
            return directory
        attach_folder(source, stage)
    else:
        if is_unpacked(source, images):
            return directory
        _unpack_download(source, stage / IMAGES, replace=True, fix=_damaged_archive_fix(source, root))
    return stage


def _unpack_download(archive: Path, target: Path, *, replace: bool = False, fix: str = REDOWNLOAD) -> None:
    """Unpack ``archive``, then trust it if it is a download with no published checksum.

    Such a download that cannot be unpacked the first time (cut short where no length showed it, a
    login page served in its place) is deleted with its hash, so that the next run downloads it
    again rather than holding every later download up against it. Once a download has been used its
    hash is kept whatever happens: the same bytes unpacked before, and the hash is what tells a
    changed file on the server from the one that worked.
    """
    unproven = never_used(archive)
    try:
        unpack(archive, target, replace=replace, fix=_DISCARDED if unproven else fix)
    except (DatasetError, UnsafeArchive) as error:
        if not unproven:
            raise
        discard(archive)
        message = str(error) if _DISCARDED in str(error) else f"{error}; {_DISCARDED}"
        raise type(error)(message) from None
    confirm(archive)


def _damaged_archive_fix(archive: Path, root: str | os.PathLike[str] | None) -> str:
    """What to do about a user's archive that cannot be unpacked: download it again, or, for the
    user's own file (never downloaded), check or replace it."""
    if archive.resolve().is_relative_to(downloads_dir(root).resolve()):
        return REDOWNLOAD
    return "the archive is damaged or incomplete; check it, or replace it with a complete copy, and ingest again"


@contextmanager
def _discarded_on_error(stage: Path) -> Iterator[None]:
    """Remove what was staged when a step fails: the dataset keeps what it held."""
    try:
        yield
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def verify(candidates: str, *, seed: int = 0, limit: int | None = None, workers: int | None = None) -> str:
    """Decode the candidates (at most ``limit`` per class, chosen by ``seed``); return the table's path.

    The table adds ``width``, ``height``, ``mode``, ``sha256`` and ``error`` (quarantine reason).
    """
    frame, layout = load_table(candidates)
    frame = limit_per_class(frame, limit, seed)
    base = Path(layout["base"])
    if layout["arrays"]:
        sources = frame["source"].tolist()
        rows = np.fromiter((int(s.rpartition(ARRAY_SEPARATOR)[2]) for s in sources), np.int64, len(sources))
        checked = verify_array(base / ARRAY_FILE, rows)
    else:
        checked = verify_files(base, frame["source"].tolist(), workers=workers)
    frame = frame.reset_index(drop=True)
    for column in ("width", "height", "mode", "sha256", "error"):
        frame[column] = checked[column].to_numpy()
    return save_table(Path(candidates).with_name("verified.npz"), frame, layout)


def build_manifest(dataset: str, verified: str, *, ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0,
                   folds: int = DEFAULT_FOLDS, limit: int | None = None, source: str | None = None) -> IngestResult:
    """Quarantine the unreadable, split the rest, and write ``manifest.csv`` and ``dataset.json``.

    Classes left with no readable image are dropped from the labels and listed as ``empty_classes``.
    The staged images and the new files replace the dataset's only when every check has passed.
    """
    spec = get_dataset(dataset)
    frame, layout = load_table(verified)
    directory = Path(verified).parent.parent
    stage = directory / STAGE
    bad = frame["error"] != ""
    skipped = layout["skipped"]
    # Kept in the work folder too, so that the reasons stay readable when the checks below fail.
    reasons = directory / WORK / QUARANTINE_FILE
    frame.loc[bad, ["source", "class_name", "error"]].rename(columns={"error": "reason"}).sort_values("source").to_csv(
        reasons, index=False, lineterminator="\n")
    with _discarded_on_error(stage):
        usable = frame.loc[~bad].copy()
        check_usable(reasons, usable)
        if not spec.official_split:
            usable["split"] = assign_splits(usable, ratios, seed)
            check_test_split(directory, usable, ratios)
        usable["fold"] = assign_folds(usable, folds, seed)
        usable, classes, empty = labelled(usable, layout["classes"])
        copies = copies_across(usable)
        info = {
            "dataset": dataset, "name": directory.name, "official_split": spec.official_split,
            "licence": spec.licence, "citation": spec.citation, "homepage": spec.homepage,
            "quarantined": int(bad.sum()), "empty_classes": empty,
            "copies_across": copies, "skipped": len(skipped),
            "parameters": {"seed": seed, "folds": folds, "limit_per_class": limit or None,
                           "ratios": None if spec.official_split else list(check_ratios(ratios)),
                           "source": recorded_source(source)},
        }
        shutil.copyfile(reasons, stage / QUARANTINE_FILE)
        digest = write_manifest(stage, usable, classes, info)
    _commit(stage, directory)
    return IngestResult(dataset=directory.name, directory=str(directory), manifest=str(directory / MANIFEST_FILE),
                        manifest_hash=digest, images=len(usable), classes=int(usable["label"].nunique()),
                        quarantined=int(bad.sum()), quarantine=str(directory / QUARANTINE_FILE), empty_classes=empty,
                        copies_across=copies, skipped=len(skipped), skipped_files=skipped_examples(skipped))


def _commit(stage: Path, directory: Path) -> None:
    """Move the staged images (if any), verification cache, quarantine list, manifest and
    ``dataset.json`` into ``directory``.

    The manifest moves last: a crash in between leaves rows whose image changed, which extract marks
    failed (with a hint to ingest again), and ingesting again completes the swap.
    """
    if os.path.lexists(stage / IMAGES):
        swap_in(stage / IMAGES, directory / IMAGES)
    # dataset.json before the manifest: extract and the stores key on the manifest, so the class
    # names its labels stand for (in dataset.json) must be in place by the time it moves.
    for name in (CACHE_FILE, QUARANTINE_FILE, INFO_FILE, MANIFEST_FILE):
        if (stage / name).exists():
            os.replace(stage / name, directory / name)
    shutil.rmtree(stage)


def ingest(dataset: str, root: str | os.PathLike[str] | None = None, *, ratios: Sequence[float] = DEFAULT_RATIOS,
           seed: int = 0, folds: int = DEFAULT_FOLDS, limit_per_class: int | None = None, mirror: str | None = None,
           source: str | None = None, name: str | None = None, checksums: Mapping[str, str] | None = None,
           workers: int | None = None, progress: bool = True) -> IngestResult:
    """Fetch, unpack, verify and split ``dataset`` under ``root``; write its manifest (no Prefect).
    ``DatasetBusy`` if another process is ingesting it."""
    stored_as = check_request(dataset, name=name, source=source, ratios=ratios, limit_per_class=limit_per_class,
                              folds=folds)
    with ingesting(dataset_dir(stored_as, root)):
        files = fetch_files(dataset, root, source=source, mirror=mirror, checksums=checksums, name=name,
                            progress=progress)
        candidates = prepare(dataset, files, root, name)
        verified = verify(candidates, seed=seed, limit=limit_per_class, workers=workers)
        return build_manifest(dataset, verified, ratios=ratios, seed=seed, folds=folds, limit=limit_per_class,
                              source=source)
