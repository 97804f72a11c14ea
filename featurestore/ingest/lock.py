"""One ingest per dataset at a time: a second one is refused at once instead of interleaving.

Two ingests under one name would stage into the same ``.next`` folder and work files, and one
could commit its manifest with the other's images.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from featurestore.datasets.errors import DatasetBusy
from featurestore.paths import make_directory
from featurestore.store.lock import WriterLock

LOCK_FILE = ".ingest.lock"


@contextmanager
def ingesting(directory: Path) -> Iterator[None]:
    """Hold the ingest lock of the dataset stored in ``directory`` (created if new) while inside;
    ``DatasetBusy`` if another process holds it, ``FileLocksUnsupported`` on a file system without locks.

    A first ingest that fails removes the directory it made, unless something besides its hidden
    work folders (``.ingest``, ``.next``) is left there: a failed request leaves no empty dataset.
    """
    new = not os.path.lexists(directory)
    make_directory(directory)
    lock = WriterLock(directory / LOCK_FILE, directory, doing="ingesting this dataset", busy=DatasetBusy)
    lock.acquire(wait_seconds=0)
    try:
        yield
    except BaseException:
        # Removed under the lock, so that no other ingest can start in it meanwhile. Kept otherwise:
        # files unpacked from a download are worth keeping for the next try.
        if new and all(entry.name.startswith(".") for entry in directory.iterdir()):
            shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        lock.release()
