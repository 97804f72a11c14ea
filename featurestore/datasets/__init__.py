"""Datasets: the registry of known datasets and the manifest contract (ingest -> extract)."""

from featurestore.datasets.manifest import Manifest, load_manifest
from featurestore.datasets.registry import DatasetSpec, Layout, Resource, dataset_names, get_dataset

__all__ = ["DatasetSpec", "Layout", "Manifest", "Resource", "dataset_names", "get_dataset", "load_manifest"]
