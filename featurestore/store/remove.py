"""Deleting a store: what `featurestore rm` does."""

from __future__ import annotations

from pathlib import Path

from featurestore.errors import RootNotWritable, StoreNotFound
from featurestore.store.h5io import directory_in_the_way
from featurestore.store.lock import WriterLock
from featurestore.store.paths import lock_path, partial_path, store_path


def remove_store(dataset: str, model: str, root=None, *, partial: bool = False) -> list[Path]:
    """Delete the store of (dataset, model), complete or interrupted (its ``.partial`` too); with
    ``partial``, only its unfinished extraction (``.partial``), keeping the complete store beside it
    (an interrupted ``--overwrite``). Returns the files deleted.

    Holds the store's writer lock while deleting: ``StoreLocked`` while another process writes it.
    ``StoreNotFound`` if there is nothing to delete, ``StoreCorrupt`` if a directory is in the
    store's place (a directory is never deleted), ``RootNotWritable`` if a file cannot be deleted.
    """
    final = store_path(dataset, model, root)
    _targets(final, partial, dataset, model)  # nothing to delete, or a directory: said without the lock
    lock = WriterLock(lock_path(final), final)
    lock.acquire(wait_seconds=0)
    try:
        # Listed again under the lock: a writer may have finished (renamed its .partial) meanwhile.
        targets = _targets(final, partial, dataset, model)
        for path in targets:
            try:
                path.unlink()
            except OSError as error:
                raise RootNotWritable(
                    f"{path}: cannot delete ({error.strerror}); the featurestore root is not writable by this "
                    f"user: make {path.parent} writable or run as its owner"
                ) from None
    finally:
        lock.release()
    return targets


def _targets(final: Path, partial: bool, dataset: str, model: str) -> list[Path]:
    """The files ``remove_store`` deletes: the store and its ``.partial`` (only the latter with ``partial``)."""
    targets = [p for p in ([] if partial else [final]) + [partial_path(final)] if p.exists()]
    if not targets:
        # named as the file that was looked for: with partial, the .partial (the store may well be there)
        missing, what = (partial_path(final), "no unfinished extraction") if partial else (final, "no store")
        raise StoreNotFound(f"{missing}: {what} for dataset {dataset!r} and model {model!r}; "
                            "`featurestore ls` lists the stores")
    for path in targets:
        if path.is_dir():
            raise directory_in_the_way(path)
    return targets
