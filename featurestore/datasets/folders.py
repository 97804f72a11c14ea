"""Readers for datasets laid out as one folder of images per class (and a user's own folder)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from featurestore.datasets.errors import DatasetError
from featurestore.errors import counted
from featurestore.datasets.registry import Layout

#: folders archivers add beside the real ones (macOS resource forks), never a class
NOT_CLASSES = frozenset({"__MACOSX"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
#: files Windows adds to a folder of pictures, skipped without a word as hidden files are
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini"})
#: how many skipped files a warning names
SKIPPED_SHOWN = 5


def is_image_name(path: Path) -> bool:
    """Whether the file name has an image extension (other files, e.g. Thumbs.db, are ignored)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def is_skipped_file(path: Path) -> bool:
    """Whether ``path``, a file that is not an image by its name, is one a user may have meant as an
    image (a .heic photo, a .txt in the wrong place): not hidden, not a file the system adds."""
    return not is_image_name(path) and not path.name.startswith(".") and path.name.lower() not in SYSTEM_FILES


def skipped_note(count: int, examples: list[str]) -> str:
    """The warning for ``count`` files skipped in the class folders, ``examples`` of them named."""
    extensions = sorted({Path(name).suffix.lower() or "none" for name in examples})
    more = ", ..." if count > len(examples) else ""
    return (f"{counted(count, 'file')} skipped (not an image extension: {', '.join(extensions)}{more}), e.g. "
            f"{', '.join(examples)}{more}; docs/datasets.md lists the extensions read")


def skipped_examples(skipped: list[str]) -> list[str]:
    """Up to ``SKIPPED_SHOWN`` of the ``skipped`` files to name, one of each extension first."""
    by_extension = {}
    for name in sorted(skipped):
        by_extension.setdefault(Path(name).suffix.lower(), name)
    firsts = sorted(by_extension.values())
    return (firsts + sorted(set(skipped) - set(firsts)))[:SKIPPED_SHOWN]


def as_text(path: str) -> str:
    """``path`` as valid UTF-8 text, which tables and CSV files can hold: the bytes of a name that is
    not UTF-8 (``os`` hands them over as lone surrogates) are written ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def from_text(text: str) -> str:
    """The path that ``as_text`` wrote as ``text``."""
    return os.fsdecode(re.sub(rb"\\x([0-9a-f]{2})", lambda hex_: bytes.fromhex(hex_[1].decode()), os.fsencode(text)))


def _listed(folder: Path) -> list[Path]:
    """The entries of ``folder`` that can be classes or images: not hidden, not an archiver's extra."""
    return [e for e in folder.iterdir() if not e.name.startswith(".") and e.name not in NOT_CLASSES]


def class_root(base: Path) -> Path:
    """The folder holding the class folders: ``base``, or the single folder an archive wrapped them in.

    A macOS zip holds ``__MACOSX/`` beside its wrapper folder: it does not make the wrapper a class.
    """
    current = base
    while True:
        entries = _listed(current)
        folders = [e for e in entries if e.is_dir()]
        # Descend only into a wrapper: a lone folder that itself holds folders (not a lone class).
        if (len(folders) == 1 and not any(is_image_name(e) for e in entries if e.is_file())
                and any(child.is_dir() for child in _listed(folders[0]))):
            current = folders[0]
            continue
        return current


def scan_class_folders(directory: Path, base: Path, shown: Path | None = None) -> Layout:
    """Candidates from ``base/<class>/**/<image>``; sources relative to ``directory``.

    Every class folder is a class, even one without images, so that ingest can say it was left empty.
    An image whose name is not UTF-8 is listed by ``as_text``: verification finds no file under that
    name and quarantines it, saying why. Messages name ``shown`` in place of ``base`` where given:
    the user's source, which ingest stages in a folder of its own.
    """
    if not base.is_dir():
        raise DatasetError(f"{shown or base}: folder not found; check the source or the archive's layout")
    root = class_root(base)
    rows = []
    folders = sorted(p for p in _listed(root) if p.is_dir())
    # Resolved before any is walked: a link into another class folder must be refused whichever
    # class comes first, or that class's images would be taken in under both labels.
    classes = [Path(os.path.realpath(folder)) for folder in folders]
    _refuse_class_names_not_utf8(folders)
    _refuse_classes_sharing_images(folders, classes)
    # Shared by all classes: a second link to one outside folder, even from another class, is refused.
    walked: set[Path] = set()
    skipped: list[Path] = []
    for folder in folders:
        for path in _class_files(folder, classes, walked, skipped):
            rows.append((as_text(path.relative_to(root).as_posix()), as_text(path.relative_to(directory).as_posix()),
                         folder.name))
    if not rows:
        raise DatasetError(
            f"{(shown / root.relative_to(base)) if shown else root}: no images found in class sub-folders; lay the "
            "images out as <folder>/<class>/<image>"
        )
    frame = pd.DataFrame(rows, columns=["id", "source", "class_name"]).assign(split="")
    return Layout(frame=frame, classes=tuple(folder.name for folder in folders),
                  skipped=tuple(sorted(as_text(path.relative_to(root).as_posix()) for path in skipped)))


def _refuse_class_names_not_utf8(folders: list[Path]) -> None:
    """A class name is a label in the manifest and the stores, which hold text: said in one line."""
    for folder in folders:
        if as_text(folder.name) != folder.name:
            raise DatasetError(f"class folder '{as_text(folder.name)}': its name is not valid UTF-8 (shown with "
                               "\\xNN for the bytes that are not); rename it")


def _refuse_classes_sharing_images(folders: list[Path], classes: list[Path]) -> None:
    """A class folder that is a link to another class folder (or into it) would give its images two
    labels: a layout error, said in one line."""
    for folder, real in zip(folders, classes, strict=True):
        for other, other_real in zip(folders, classes, strict=True):
            # Only a link can lead into a sibling folder.
            if folder.is_symlink() and other != folder and real.is_relative_to(other_real):
                raise DatasetError(f"class folder {folder.name!r} is a link to the images of class {other.name!r} "
                                   f"({real}), which would then carry two labels; replace the link with a folder "
                                   "of its own images")


def _class_files(folder: Path, classes: list[Path], walked: set[Path], skipped: list[Path]) -> list[Path]:
    """The image files under ``folder``, in linked sub-folders too, and the linked sub-folders skipped;
    the other files a user may have meant as images are added to ``skipped``.

    ``Path.rglob`` does not enter a linked sub-folder (Python 3.11), so its images went missing.
    A link into any class folder of ``classes`` (resolved), to a folder in ``walked`` (already
    walked, and then added to it), or to one holding this folder (``loop -> ..``), would take in
    images twice, under another class's label, or forever: it stays a candidate, so that
    verification quarantines it with its reason, as it does a broken link.
    """
    found: list[Path] = []
    for current, subfolders, names in os.walk(folder, followlinks=True):
        here = Path(os.path.realpath(current))
        kept = []
        for name in sorted(subfolders):
            path = os.path.join(current, name)
            real = Path(os.path.realpath(path))
            into_a_class = os.path.islink(path) and any(real.is_relative_to(c) for c in classes)
            if into_a_class or real in walked or here.is_relative_to(real):
                found.append(Path(current, name))
            else:
                walked.add(real)
                kept.append(name)
        subfolders[:] = kept
        paths = [Path(current, name) for name in names]
        found += [p for p in paths if is_image_name(p) and (p.is_file() or not p.exists())]
        skipped += [p for p in paths if is_skipped_file(p)]
    return sorted(found)


def folder_reader(subdirectory: str) -> Callable[[Path, dict[str, Path]], Layout]:
    """Reader for an archive that unpacks to ``subdirectory/<class>/<image>``."""

    def read(directory: Path, paths: dict[str, Path]) -> Layout:
        return scan_class_folders(directory, directory / subdirectory)

    return read
