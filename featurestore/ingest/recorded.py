"""What the feature pipeline asks ingest for: a registered dataset, or a user's dataset again as recorded.

A dataset ingested under a name of the user's (``featurestore ingest imagefolder --name NAME``, or
another dataset made from a ``--source``)
has no registry entry: its ``dataset.json`` holds the request that made it (source, ratios, seed,
folds, limit). The pipeline ingests it again from that record, so a scheduled run takes in the
images added to its source since, and an unchanged source gives the same manifest, whose stores
are then reused.
"""

from __future__ import annotations

import os

from featurestore.datasets.errors import ManifestNotFound, UnknownDataset
from featurestore.datasets.manifest import ingested_names, read_info
from featurestore.datasets.registry import dataset_names, get_dataset, source_datasets
from featurestore.paths import check_name, dataset_dir


def pipeline_ingest(dataset: str, root: str | os.PathLike[str] | None = None, *, seed: int = 0,
                    limit_per_class: int | None = None, mirror: str | None = None) -> dict:
    """The keyword arguments of the ingest of ``dataset`` in a pipeline run over ``root``.

    A registered dataset takes the run's ``seed``, ``limit_per_class`` and ``mirror``; a user's
    dataset keeps what it was ingested with, as does a source dataset (``imagefolder``) ingested under
    its own name (its images come from a source only its record knows; ``ManifestNotFound`` if there is none).
    Any other name is ``UnknownDataset`` naming both kinds.
    """
    registered = dataset in dataset_names()
    if registered and not get_dataset(dataset).needs_source:
        return {"dataset": dataset, "seed": seed, "limit_per_class": limit_per_class, "mirror": mirror}
    check_name("dataset", dataset)
    directory = dataset_dir(dataset, root)
    try:
        info = read_info(directory, dataset, recorded=True)
    except FileNotFoundError:
        if registered:
            raise ManifestNotFound(
                f"{directory}: {dataset!r} has not been ingested, and its images are yours to name; ingest them "
                f"first with `featurestore ingest {dataset} --source DIR|ARCHIVE|URL [--name NAME]`, then give that "
                "name to -d") from None
        # Only source datasets take a --name, so any other name ingested here is a user's dataset.
        yours = [n for n in ingested_names(root) if n not in dataset_names()]
        raise UnknownDataset(
            f"unknown dataset {dataset!r}: not registered ({', '.join(dataset_names())}) and not ingested under "
            f"that --name (yours: {', '.join(yours) or 'none'}); for your own images run `featurestore ingest "
            f"{'|'.join(source_datasets())} --source DIR --name {dataset}` first") from None
    recorded = info["parameters"]
    return {"dataset": info["dataset"], "name": dataset, "source": recorded["source"], "ratios": recorded["ratios"],
            "seed": recorded["seed"], "folds": recorded["folds"], "limit_per_class": recorded["limit_per_class"]}
