"""Errors raised while fetching, unpacking, verifying and reading datasets (one-line messages)."""

from __future__ import annotations

from featurestore.errors import FeatureStoreError, InvalidName, InvalidOption


class UnknownDataset(InvalidName):
    """A dataset name that is not in the registry."""


class DatasetError(FeatureStoreError):
    """A dataset that cannot be used as it is (no images, one class, bad layout, bad parameters)."""


class InvalidIngestOption(InvalidOption, DatasetError):
    """An ingest option nothing can run with (ratios, limit, folds, a missing or misplaced
    --source): exit 2, like every bad option, and checked before anything is fetched."""


class DatasetBusy(FeatureStoreError):
    """Another process is ingesting the same dataset (under the same name) right now."""


class ChecksumMismatch(FeatureStoreError):
    """A downloaded or local file whose size or hash differs from the pinned one."""


class DownloadFailed(FeatureStoreError):
    """A download that still failed after its retries (server error, timeout)."""


class DownloadRefused(DownloadFailed):
    """A download refused outright, by an HTTP answer (404, 403, ...) or by a host where nothing
    listens (connection refused): retrying at once will not help."""


class UnsafeArchive(FeatureStoreError):
    """An archive with a member that would escape the target or exhaust the disk."""


class ManifestNotFound(DatasetError, FileNotFoundError):
    """No manifest exists for the dataset: it has not been ingested under this root."""


class ManifestDamaged(DatasetError):
    """A dataset's ``manifest.csv`` or ``dataset.json`` that is missing beside the other, not what
    ingest writes (not JSON, missing keys, garbage rows, unknown splits), or changed since:
    ingesting the dataset again writes both anew."""


class ImageChanged(DatasetError):
    """An image file whose bytes differ from those ingest verified and hashed."""
