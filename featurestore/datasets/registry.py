"""The dataset registry: one ``DatasetSpec`` entry per dataset, looked up by name.

Adding a dataset is one ``register(DatasetSpec(...))`` call in ``catalog.py`` plus a test;
nothing else dispatches on dataset names (messages that name the datasets taking a ``--source``
ask ``source_datasets``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from featurestore.datasets.errors import UnknownDataset
from featurestore.registry import Registry


@dataclass(frozen=True)
class Resource:
    """One file a dataset is built from.

    ``checksum`` is ``"md5:<hex>"`` or ``"sha256:<hex>"`` as published by the dataset's authors
    or a well-kept loader; ``None`` means none is published, and the hash seen at the first
    download is recorded next to the file and enforced from then on. ``size`` pins the byte
    count where it is known. ``local_checksums`` are extra hashes accepted only for copies
    found in ``local_dirs`` (e.g. a distribution package that recompressed the same data).
    ``mirrored`` is False for a user's own URL, which a dataset mirror does not carry.
    """

    filename: str
    url: str
    checksum: str | None = None
    size: int | None = None
    unpack: bool = False
    local_dirs: tuple[str, ...] = ()
    local_checksums: tuple[str, ...] = ()
    mirrored: bool = True


@dataclass(frozen=True)
class Layout:
    """What a dataset reader returns: candidate images before verification.

    ``frame`` has columns ``id``, ``source``, ``class_name`` and ``split`` (the official split,
    or ``""`` where none is published). ``classes`` fixes the label order. ``skipped``: the files in
    the class folders that are not images by their extension, which ingest reports.
    """

    frame: pd.DataFrame
    classes: tuple[str, ...]
    arrays: bool = False
    skipped: tuple[str, ...] = ()


# A reader turns the fetched files into candidates: (dataset directory, {filename: local path}).
Reader = Callable[[Path, dict[str, Path]], Layout]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: where it comes from, what it is, and how its files are laid out.

    ``homepage`` goes into ``dataset.json``; it and ``notes`` are shown by ``featurestore datasets --json``.
    ``needs_source`` marks a dataset made of a user's images (``--source``, stored under ``--name``).
    """

    name: str
    title: str
    licence: str
    citation: str
    homepage: str
    resources: tuple[Resource, ...]
    reader: Reader
    official_split: bool
    images: int | None = None
    classes: int | None = None
    size: int | None = None
    notes: str = ""
    needs_source: bool = False


def _register_builtins() -> None:
    from featurestore.datasets import catalog  # noqa: F401  (its module body registers the built-in datasets)


DATASETS: Registry[DatasetSpec] = Registry(
    "dataset", error=UnknownDataset, hint=" (see `featurestore datasets`)", populate=_register_builtins)


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry (names are unique) and return it."""
    return DATASETS.register(spec.name, spec)


def get_dataset(name: str) -> DatasetSpec:
    """Return the registered dataset ``name``, or raise ``UnknownDataset`` listing the known ones."""
    return DATASETS.get(name)


def dataset_names() -> list[str]:
    """Names of every registered dataset, sorted."""
    return sorted(DATASETS.names())


def source_datasets() -> list[str]:
    """Names of the registered datasets made from a user's ``--source`` (the ones taking ``--name``), sorted."""
    return [name for name in dataset_names() if get_dataset(name).needs_source]
