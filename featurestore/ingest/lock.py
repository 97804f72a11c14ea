"""One ingest per dataset at a time: a second one is refused at once instead of interleaving.

Two ingests under one name would stage into the same ``.next`` folder and work files, and one
could commit its manifest with the other's images.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from featurestore.datasets.errors import DatasetBusy
from featurestore.store.lock import WriterLock

LOCK_FILE = ".ingest.lock"


@contextmanager
def ingesting(directory: Path) -> Iterator[None]:
    """Hold the ingest lock of the dataset stored in ``directory`` (created if new) while inside;
    ``DatasetBusy`` if another process holds it, ``FileLocksUnsupported`` on a file system without locks."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = WriterLock(directory / LOCK_FILE, directory, doing="ingesting this dataset", busy=DatasetBusy)
    lock.acquire(wait_seconds=0)
    try:
        yield
    finally:
        lock.release()
