"""Checks of an ingest request, made before anything is fetched: the name a dataset is stored
under, whether ``--source`` fits the dataset, and the split options, each problem in one line."""

from __future__ import annotations

from collections.abc import Sequence

from featurestore.datasets.errors import InvalidIngestOption
from featurestore.datasets.registry import dataset_names, get_dataset, source_datasets
from featurestore.datasets.sources import is_url, local_source, source_resource
from featurestore.ingest.split import DEFAULT_FOLDS, DEFAULT_RATIOS, check_folds, check_limit, check_ratios
from featurestore.paths import check_name


def target_name(dataset: str, name: str | None) -> str:
    """The name the dataset is stored under: ``name`` (only for user sources) or the dataset's own.

    A user source may not take a registered dataset's name: it would stand in for that dataset.
    """
    spec = get_dataset(dataset)
    if name and not spec.needs_source and name != dataset:
        raise InvalidIngestOption(f"--name {name!r} applies only to {_source_datasets()}; {dataset!r} is stored "
                                  "under its own name")
    # Compared without case: on a case-insensitive file system the two would share one folder.
    if name and name != dataset and name.lower() in {known.lower() for known in dataset_names()}:
        raise InvalidIngestOption(f"--name {name!r} is a registered dataset's name; pick another --name for your "
                                  "images")
    return check_name("dataset", name or dataset)


def check_source(dataset: str, source: str | None) -> None:
    """``--source`` is given exactly for the datasets that need one (``needs_source``)."""
    if get_dataset(dataset).needs_source and not source:
        raise InvalidIngestOption(f"dataset {dataset!r} needs --source: a folder with one sub-folder per class, "
                                  "an archive of one, or its URL")
    if source and not get_dataset(dataset).needs_source:
        raise InvalidIngestOption(f"--source applies only to {_source_datasets()}; {dataset!r} is fetched from its "
                                  "registry entry")


def _source_datasets() -> str:
    """The datasets taking ``--source`` and ``--name``, quoted for a message: ``'a' or 'b'``."""
    return " or ".join(map(repr, source_datasets()))


def check_request(dataset: str, *, name: str | None = None, source: str | None = None,
                  ratios: Sequence[float] = DEFAULT_RATIOS, limit_per_class: int | None = None,
                  folds: int = DEFAULT_FOLDS) -> str:
    """Check an ingest request before anything is fetched, each problem in one line (the CLI, the
    flow and ``ingest`` call it); return the name the dataset is stored under."""
    stored_as = target_name(dataset, name)
    check_source(dataset, source)
    # A URL naming no file, or a local source that is not there: said now, not after a download.
    if source and is_url(source):
        source_resource(source)
    elif source:
        local_source(source)
    check_limit(limit_per_class)
    check_ratios(ratios)
    check_folds(folds)
    return stored_as
