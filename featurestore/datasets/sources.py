"""A user's own images (``imagefolder``): a folder, a local archive or an archive URL."""

from __future__ import annotations

import os
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from featurestore.datasets.errors import DatasetError
from featurestore.datasets.folders import scan_class_folders
from featurestore.datasets.registry import Layout, Resource

IMAGES = "images"
_ACCEPTED = ("give a folder with one sub-folder per class, a tar or zip archive of one (.tar, .tar.gz, .tgz, .zip), "
             "or an http(s) URL of such an archive")


def is_url(source: str) -> bool:
    """Whether ``source`` is an http(s) URL rather than a local path."""
    return urlparse(source).scheme in ("http", "https")


def source_resource(source: str, checksum: str | None = None) -> Resource:
    """The download of a source given by URL (``checksum`` pins it; else recorded on first download)."""
    filename = Path(unquote(urlparse(source).path)).name
    # "." and ".." (from %2e%2e) would name the download's folder or its parent, not a file in it.
    if filename in ("", ".", "..") or "\0" in filename:
        raise DatasetError(f"source URL {source!r} names no file; give the URL of a .zip, .tar or .tgz archive")
    return Resource(filename, source, checksum, unpack=True, mirrored=False)


def local_source(source: str) -> Path:
    """The local folder or archive ``source`` names; ``DatasetError`` if there is none, or it is a
    file whose first bytes are not a tar or zip archive's (said before any flow starts, rather
    than as a damaged archive once one has)."""
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise DatasetError(f"source {source!r} does not exist; {_ACCEPTED}")
    if not path.is_dir() and not _is_archive(path):
        raise DatasetError(f"source {source!r} is a file but not a tar or zip archive (nor the start of one); "
                           f"{_ACCEPTED}")
    return path


def _is_archive(path: Path) -> bool:
    """Whether the file ``path`` starts as a tar (compressed or not) or zip archive does."""
    try:
        return tarfile.is_tarfile(path) or zipfile.is_zipfile(path)
    except OSError:  # unreadable: unpacking it names the error, as for any archive it cannot read
        return True


def recorded_source(source: str | None) -> str | None:
    """``source`` as ``dataset.json`` keeps it: a URL as given, a path made absolute, so that an
    ingest again from the record (``featurestore run -d NAME``) finds it from any directory."""
    if source is None or is_url(source):
        return source
    return str(Path(source).expanduser().resolve())


def is_attached(folder: Path, directory: Path) -> bool:
    """Whether ``directory/images`` is a link to ``folder`` already."""
    link = directory / IMAGES
    return link.is_symlink() and Path(os.readlink(link)) == folder


def attach_folder(folder: Path, directory: Path) -> None:
    """Make ``directory/images`` a link to the user's ``folder`` (the images are not copied)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / IMAGES).symlink_to(folder, target_is_directory=True)


def read_imagefolder(directory: Path, paths: dict[str, Path]) -> Layout:
    """Candidates from ``directory/images/<class>/<image>`` (a linked folder or an unpacked archive),
    whose problems name the source in ``paths`` that the user gave."""
    return scan_class_folders(directory, directory / IMAGES, paths["source"])
