"""The rows of ``featurestore datasets``: each registered dataset, whether it is ingested here, and
the datasets ingested under a name of the user's."""

from __future__ import annotations

import os

from featurestore.datasets.errors import ManifestDamaged
from featurestore.datasets.manifest import checked_info, is_ingested
from featurestore.datasets.registry import DatasetSpec
from featurestore.paths import dataset_dir


def _damaged_row(name: str, error: ManifestDamaged) -> dict:
    """A row of ``featurestore datasets`` for a dataset whose record cannot be read: listed as
    ``damaged``, with the one-line ``problem`` (a key only such rows have), so that the other
    datasets are listed still."""
    return {"ingested": "damaged", "present": True, "problem": str(error), "name": name}


def describe_ingested(name: str, root: str | os.PathLike[str] | None = None) -> dict:
    """A row of ``featurestore datasets`` for a dataset ingested under a name of the user's
    (``ingest imagefolder --name``), read from its ``dataset.json`` (``damaged`` if its manifest is
    missing or not the one recorded there)."""
    try:
        info = checked_info(dataset_dir(name, root), name, recorded=True)
    except ManifestDamaged as error:
        return {"images": None, "classes": None, "size": None, "licence": None, "official_split": None,
                "title": None, "homepage": None, "notes": None, **_damaged_row(name, error)}
    return {"name": name, "images": info["images"], "ingested": info["images"], "classes": len(info["classes"]),
            "size": None, "licence": info.get("licence"), "official_split": info["official_split"], "present": True,
            "title": f"{info['dataset']} from {info['parameters']['source']}", "homepage": info.get("homepage"),
            "notes": None}


def describe(spec: DatasetSpec, root: str | os.PathLike[str] | None = None) -> dict:
    """One row of ``featurestore datasets``: what the dataset is, whether it is here already and how
    many of its images were ingested (fewer than published after a ``--limit-per-class``), or that
    its record is ``damaged``."""
    directory = dataset_dir(spec.name, root)
    present = is_ingested(directory)
    row = {"name": spec.name, "images": spec.images, "ingested": None, "classes": spec.classes, "size": spec.size,
           "licence": spec.licence, "official_split": spec.official_split, "present": present, "title": spec.title,
           "homepage": spec.homepage, "notes": spec.notes}
    try:
        return dict(row, ingested=checked_info(directory, spec.name)["images"]) if present else row
    except ManifestDamaged as error:
        return dict(row, **_damaged_row(spec.name, error))
