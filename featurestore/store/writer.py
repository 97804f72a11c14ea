"""Writing a store: created once, filled in chunks, resumable after a crash, completed atomically."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from featurestore.errors import FeatureStoreError, StoreConflict, StoreCorrupt, StoreIncomplete, StoreSchemaTooNew
from featurestore.paths import make_directory
from featurestore.store import format as fmt
from featurestore.store.h5io import copy_attributes, corrupt, create_preallocated, fsync_path, open_h5, open_store
from featurestore.store.lock import WriterLock
from featurestore.store.paths import lock_path, partial_path, store_path
from featurestore.store.provenance import (
    count_failed, new_provenance, precision_name, provenance_frame, read_provenance, recorded_precision, utc_now,
)
from featurestore.store.reader import check_header
from featurestore.store.spec import InvalidStoreInput, RowTable, StoreSpec, canonical_json
from featurestore.store.state import store_state

log = logging.getLogger(__name__)

DEFAULT_COMMIT_BYTES = 64 << 20


class StoreWriter:
    """Fills one store. Use ``StoreWriter.open`` and write rows in store order.

    ``committed_rows`` rows are durable; after a crash, ``open`` again resumes there. If a
    complete store with the same fingerprint exists, ``is_complete`` is True and nothing is
    written.
    """

    def __init__(self, spec: StoreSpec, rows: RowTable, final: Path, lock: WriterLock,
                 file: h5py.File | None, commit_bytes: int, durable: bool, created: bool = False):
        self.spec = spec
        self.rows = rows
        self.path = final
        self._lock = lock
        self._file = file
        self._commit_bytes = commit_bytes
        self._durable = durable
        self._uncommitted = 0
        self.committed_rows = len(rows) if file is None else int(file[fmt.COMMITTED][0])
        #: this writer started the partial file (it resumed none)
        self.created = created
        if file is not None:
            self._matrix, self._status, self._committed = file[fmt.MATRIX], file[fmt.ROW_STATUS], file[fmt.COMMITTED]
        self.position = self.committed_rows

    @classmethod
    def open(cls, spec: StoreSpec, rows: RowTable, root=None, *, overwrite: bool = False,
             commit_bytes: int = DEFAULT_COMMIT_BYTES, durable: bool = True) -> StoreWriter:
        """Open the store for ``spec``: reuse it if complete, resume it if partial, else create it.

        ``overwrite`` allows replacing a complete store built from other inputs, or one with rows
        that failed at extraction; the old store stays readable until the new one is complete.
        ``durable`` fsyncs at every commit.
        """
        final = store_path(spec.dataset, spec.model, root)
        make_directory(final.parent)
        lock = WriterLock(lock_path(final), final).acquire()
        try:
            if _complete_store_matches(spec, root, overwrite):
                return cls(spec, rows, final, lock, None, commit_bytes, durable)
            file, created = _resume_or_create(final, spec, rows)
        except BaseException:
            lock.release()
            raise
        return cls(spec, rows, final, lock, file, commit_bytes, durable, created)

    @property
    def is_complete(self) -> bool:
        """True when the store was already complete (nothing to write)."""
        return self._file is None and self.committed_rows == len(self.rows)

    @property
    def remaining(self) -> int:
        """Rows still to be written."""
        return len(self.rows) - self.position

    def write(self, features: np.ndarray, failed: np.ndarray | None = None) -> None:
        """Write the next ``len(features)`` rows; rows flagged in ``failed`` are stored as zeros."""
        if self._file is None:
            raise FeatureStoreError(f"{self.path}: store is already complete; nothing may be written to it")
        features = np.ascontiguousarray(features, dtype=self.spec.dtype)
        if features.ndim != 2 or features.shape[1] != self.spec.dim:
            raise InvalidStoreInput(
                f"{self.path}: expected features of shape (k, {self.spec.dim}), got {features.shape}"
            )
        k = features.shape[0]
        if k > self.remaining:
            raise InvalidStoreInput(f"{self.path}: {k} rows given but only {self.remaining} remain to be written")
        status = np.full(k, fmt.STATUS_OK, dtype=np.int8)
        if failed is not None:
            failed = np.asarray(failed, dtype=bool)
            if failed.shape != (k,):
                raise InvalidStoreInput(f"{self.path}: the failed-row mask has shape {failed.shape} for {k} rows of "
                                        f"features; give one flag per row, shape ({k},)")
            if failed.any():
                features = features.copy()
                features[failed] = 0
                status[failed] = fmt.STATUS_FAILED
        start, stop = self.position, self.position + k
        self._matrix.write_direct(features, dest_sel=np.s_[start:stop])
        self._status[start:stop] = status
        self.position = stop
        self._uncommitted += features.nbytes
        if self._uncommitted >= self._commit_bytes:
            self.commit()

    def commit(self) -> None:
        """Make every row written so far durable; a crash after this resumes at ``position``."""
        if self._file is None or self.position == self.committed_rows:
            return
        partial = partial_path(self.path)
        # The data must reach the file before the counter that vouches for it.
        self._file.flush()
        if self._durable:
            fsync_path(partial)
        self._committed[0] = self.position
        self._file.flush()
        if self._durable:
            fsync_path(partial)
        self.committed_rows = self.position
        self._uncommitted = 0

    def finalize(self, extra_provenance: dict | None = None) -> Path:
        """Mark the store complete and move it into place atomically; return its path."""
        if self._file is None:
            return self.path
        if self.remaining:
            raise StoreIncomplete(
                f"{self.path}: cannot finalize after {self.position} of {len(self.rows)} rows; write the rest first"
            )
        self.commit()
        partial = partial_path(self.path)
        provenance = read_provenance(self._file)
        extra = dict(extra_provenance or {})
        provenance["library_versions"].update(extra.pop("library_versions", {}))
        provenance["extra"].update(extra)
        provenance.update(
            complete=True,
            completed_at=utc_now(),
            failed_rows=count_failed(self._status[:], fmt.STATUS_FAILED),
        )
        self._file.attrs[fmt.ATTR_PROVENANCE] = canonical_json(provenance)
        self._file.attrs[fmt.ATTR_COMPLETE] = np.uint8(1)
        self._file.close()
        self._file = None
        _put_pandas(partial, fmt.PROVENANCE_KEY, provenance_frame(provenance), mode="a", format="table")
        fsync_path(partial)
        os.replace(partial, self.path)
        fsync_path(self.path.parent)
        self.committed_rows = self.position
        return self.path

    def close(self) -> None:
        """Commit what was written and release the store (it stays resumable if incomplete)."""
        try:
            if self._file is not None:
                self.commit()
                self._file.close()
                self._file = None
        finally:
            self._lock.release()

    def discard_if_unused(self) -> bool:
        """Release the store, deleting its partial file if this writer created it and wrote no
        row: a pass that fails before its first batch (weights that do not load, say) leaves no
        "interrupted 0/N" store behind. A resumed or partly written store is kept. True if deleted."""
        unused = self.created and self.position == 0
        if unused:
            self.discard()
        else:
            self.close()
        return unused

    def discard(self) -> None:
        """Release the store and delete its partial file with every row in it (a complete store
        beside it is left as it is)."""
        self.close()
        partial_path(self.path).unlink(missing_ok=True)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _complete_store_matches(spec: StoreSpec, root, overwrite: bool) -> bool:
    """True if a complete store for ``spec`` exists (with ``overwrite``, one without failed rows);
    with ``overwrite``, another store is no obstacle (a file that is not a readable store is:
    ``StoreCorrupt`` says to move or remove it)."""
    try:
        return store_state(spec, root, redo_failed=overwrite) == "complete"
    except StoreConflict:
        if overwrite:
            return False
        raise


def _resume_or_create(final: Path, spec: StoreSpec, rows: RowTable) -> tuple[h5py.File, bool]:
    """Open the partial file if it belongs to this request, else start a fresh one; True if fresh."""
    partial = partial_path(final)
    if partial.exists():
        reason = _resume_blocker(partial, spec, rows)
        if reason is None:
            return open_h5(partial, "r+"), False
        log.warning("%s: discarding interrupted extraction (%s); starting again", partial, reason)
        partial.unlink()
    _create(partial, spec, rows)
    return open_h5(partial, "r+"), True


def _resume_blocker(partial: Path, spec: StoreSpec, rows: RowTable) -> str | None:
    """Why the partial file cannot be resumed for this request, or None if it can.

    A partial whose ``finalize`` was killed while pandas rewrote ``/provenance`` (pandas removes
    the old group before writing the new one) holds every row: it is resumable, its
    ``/provenance`` rebuilt here from the provenance attribute, and the caller's ``finalize``
    completes it without recomputing a row.
    """
    try:
        with open_store(partial) as file:
            # A partial cut short while being created lacks part of it (and the fingerprint, written last).
            provenance = check_header(file, partial, may_lack=(fmt.PROVENANCE_KEY,))
            if file.attrs.get(fmt.ATTR_FINGERPRINT) != spec.fingerprint:
                return "it was started from other inputs"
            if int(file.attrs.get(fmt.ATTR_SCHEMA, -1)) != fmt.SCHEMA_VERSION:
                return "it has another schema version"
            stored_ids = fmt.read_ids(file)
            if len(stored_ids) != len(rows) or not np.array_equal(stored_ids, rows.ids):
                return "its rows differ from the requested ones"
            recorded = recorded_precision(provenance, at_creation=True)
            if spec.precision is not None and recorded != spec.precision:
                return f"its rows were computed in {precision_name(recorded)} and this pass computes in {spec.precision}"
            lost_provenance = fmt.PROVENANCE_KEY not in file
            if lost_provenance and int(file[fmt.COMMITTED][0]) != len(rows):
                # Only finalize rewrites /provenance, and only once every row is committed.
                return f"it is unreadable: {corrupt(partial, 'store lacks /provenance')}"
    except (StoreCorrupt, StoreSchemaTooNew) as error:
        return f"it is unreadable: {error}"
    if lost_provenance:
        log.warning("%s: its completion was interrupted; rebuilding /provenance and finishing it (all %d rows "
                    "are kept)", partial, len(rows))
        # The root attribute outlives the group: finalize updated it before pandas touched /provenance.
        _put_pandas(partial, fmt.PROVENANCE_KEY, provenance_frame(provenance), mode="a", format="table")
        fsync_path(partial)
    return None


def _put_pandas(path: Path, key: str, frame: pd.DataFrame, *, mode: str, format: str, queryable: bool = False) -> None:
    # "table" stores strings at fixed width (a "fixed" frame would pickle them); data columns
    # make `pd.read_hdf(path, "rows", where="split == 'test'")` work.
    # PyTables' on-disk indexes are skipped: they cost more to build than a scan of the rows saves.
    frame.to_hdf(path, key=key, mode=mode, format=format, data_columns=True if queryable else None, index=False)


def _create(partial: Path, spec: StoreSpec, rows: RowTable) -> None:
    """Write a new, empty partial store: every structure allocated, no feature written yet."""
    columns = fmt.feature_columns(spec.dim)
    template = pd.DataFrame(np.zeros((1, spec.dim), dtype=spec.dtype), columns=columns,
                            index=pd.Index(rows.ids[:1], name="id"))
    provenance = new_provenance(spec, rows)
    _put_pandas(partial, fmt.ROWS_KEY, rows.to_frame(), mode="w", format="table", queryable=True)
    _put_pandas(partial, fmt.FEATURES_KEY, template, mode="a", format="fixed")
    _put_pandas(partial, fmt.PROVENANCE_KEY, provenance_frame(provenance), mode="a", format="table")
    with h5py.File(partial, "r+") as file:
        # pandas wrote a one-row frame; swap in full-size arrays with the very same attributes.
        templates = {name: f"{name}_template" for name in (fmt.MATRIX, fmt.ROW_INDEX)}
        for name, template in templates.items():
            file.move(name, template)
        matrix = create_preallocated(file, fmt.MATRIX, (len(rows), spec.dim), spec.dtype)
        index = file.create_dataset(fmt.ROW_INDEX, data=np.char.encode(rows.ids.astype(str), "utf-8"))
        copy_attributes(file[templates[fmt.MATRIX]], matrix)
        copy_attributes(file[templates[fmt.ROW_INDEX]], index)
        for template in templates.values():
            del file[template]
        file.create_group(fmt.EXTRACTION_GROUP)
        create_preallocated(file, fmt.COMMITTED, (1,), np.int64)[0] = 0
        create_preallocated(file, fmt.ROW_STATUS, (len(rows),), np.int8)[:] = fmt.STATUS_PENDING
        file.attrs[fmt.ATTR_SCHEMA] = fmt.SCHEMA_VERSION
        file.attrs[fmt.ATTR_PROVENANCE] = canonical_json(provenance)
        file.attrs[fmt.ATTR_COMPLETE] = np.uint8(0)
        # Last: a partial interrupted before this line (Ctrl-C can land anywhere) has no fingerprint
        # and is never resumed, only started again.
        file.attrs[fmt.ATTR_FINGERPRINT] = spec.fingerprint
    fsync_path(partial)
