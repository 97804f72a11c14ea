"""Prefect tasks of the ingest flow: thin wrappers over ``featurestore.ingest.pipeline``.

They exchange paths and small dicts only. The fetch task is not retried: the download retries
its own requests (``ingest.download.ATTEMPTS``), and a checksum mismatch or a refused URL would
fail the same way again.
"""

from __future__ import annotations

from dataclasses import asdict

from featurestore.ingest import pipeline
from tasks.interrupts import task


@task(name="fetch-dataset")
def fetch_files(dataset: str, root: str | None, source: str | None, mirror: str | None,
                checksums: dict[str, str] | None, name: str | None) -> dict[str, str]:
    """Download (or find locally) the dataset's files; return ``{filename: path}``."""
    return pipeline.fetch_files(dataset, root, source=source, mirror=mirror, checksums=checksums, name=name)


@task(name="prepare-dataset")
def prepare(dataset: str, files: dict[str, str], root: str | None, name: str | None) -> str:
    """Unpack safely and read the layout; return the candidates table's path."""
    return pipeline.prepare(dataset, files, root, name)


@task(name="verify-images")
def verify(candidates: str, seed: int, limit_per_class: int | None) -> str:
    """Decode every candidate once (cached across runs); return the verified table's path."""
    return pipeline.verify(candidates, seed=seed, limit=limit_per_class)


@task(name="write-manifest")
def build_manifest(dataset: str, verified: str, ratios: list[float], seed: int, folds: int,
                   limit_per_class: int | None, source: str | None) -> dict:
    """Quarantine, split and write the manifest; return the ingest summary as a dict."""
    result = pipeline.build_manifest(dataset, verified, ratios=ratios, seed=seed, folds=folds,
                                     limit=limit_per_class, source=source)
    return asdict(result)
