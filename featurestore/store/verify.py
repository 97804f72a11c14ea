"""Checking a store's integrity: what `featurestore verify` reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featurestore.errors import FeatureStoreError, StoreNotFound, counted
from featurestore.store import format as fmt
from featurestore.store.advice import rm_command
from featurestore.store.catalog import catalog, final_path_of
from featurestore.store.h5io import open_store
from featurestore.store.lock import holder_of
from featurestore.store.paths import lock_path
from featurestore.store.reader import check_header, interrupted_merge, read_frame, rows_of
from featurestore.store.spec import FINGERPRINT_FIELDS, fingerprint_of
from featurestore.store.staleness import rebuild_command

SCAN_ROWS = 8192
SHOW_FAILED = 3  # failed ids named in the warning; the rest are counted
BEING_WRITTEN = "being written now; verify it once its extraction ends"


@dataclass
class VerifyReport:
    """Outcome of verifying one store file: problems fail it, warnings do not."""

    path: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if the store has no problem."""
        return not self.problems


def _count_non_finite(matrix) -> tuple[int, int]:
    """(rows containing NaN or inf, first such row), scanning in bounded chunks."""
    bad_rows, first = 0, -1
    for start in range(0, matrix.shape[0], SCAN_ROWS):
        block = matrix[start:start + SCAN_ROWS]
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            if first < 0:
                first = start + int(np.argmax(bad))
            bad_rows += int(bad.sum())
    return bad_rows, first


def _unfinished(partial: Path) -> str:
    """Why a partial store file fails verify, and what to do about it."""
    final = final_path_of(partial)
    writer = holder_of(lock_path(final))
    if writer:
        return f"extraction in progress: {writer} is writing it; wait for it to finish"
    merge = interrupted_merge(partial)
    if final.exists():
        # Only `--overwrite` builds a partial beside a complete store; without the flag extract and merge-shards refuse.
        resume = f"run `{merge}`" if merge else "run extract again with --overwrite"
        return (f"interrupted `{'merge-shards' if merge else 'extract'} --overwrite` (partial file beside the complete "
                f"store); {resume} to resume it, or `{rm_command(partial)}` to drop it")
    if merge:
        return f"merge of shards not finished (partial file); run `{merge}` to resume it"
    return "extraction not finished (partial file); run extract again to resume it"


def verify_file(path: Path) -> VerifyReport:
    """Check shapes, completeness, fingerprint and finiteness of one store file."""
    report = VerifyReport(path)
    problems = report.problems
    if path.name.endswith(fmt.PARTIAL_SUFFIX):
        problems.append(_unfinished(path))
        return report
    try:
        with open_store(path) as file:
            provenance = check_header(file, path)
            # Every key the docs promise pandas reads must read: /features's header and first row
            # (cheap), /provenance and /rows, read last so that rows_of finds a store replaced
            # meanwhile (all three are read by path).
            read_frame(path, fmt.FEATURES_KEY, start=0, stop=1)
            read_frame(path, fmt.PROVENANCE_KEY)
            rows = rows_of(file, path)
            matrix = file[fmt.MATRIX]
            n, dim = provenance["rows"], provenance["dim"]
            if not bool(file.attrs.get(fmt.ATTR_COMPLETE, False)):
                problems.append("store is not marked complete")
            shapes = {"features": matrix.shape[0], "ids": file[fmt.ROW_INDEX].shape[0],
                      "rows table": len(rows), "row status": file[fmt.ROW_STATUS].shape[0]}
            if set(shapes.values()) != {n}:
                problems.append(f"row counts disagree (provenance says {n}): "
                                + ", ".join(f"{k} {v}" for k, v in shapes.items()))
            if matrix.shape[1] != dim or str(matrix.dtype) != provenance["dtype"]:
                problems.append(f"feature matrix is {matrix.shape[1]} x {matrix.dtype}, provenance says {dim} x {provenance['dtype']}")
            committed = int(file[fmt.COMMITTED][0])
            if committed != n:
                problems.append(f"only {committed} of {n} rows committed")
            stored = str(file.attrs.get(fmt.ATTR_FINGERPRINT, ""))
            computed = fingerprint_of({name: provenance.get(name) for name in FINGERPRINT_FIELDS})
            if not stored == provenance.get("fingerprint") == computed:
                problems.append(f"fingerprint inconsistent: attribute {stored[:12]}, provenance "
                                f"{str(provenance.get('fingerprint'))[:12]}, recomputed {computed[:12]}")
            if len(rows) == shapes["ids"] and not np.array_equal(rows.index.to_numpy(dtype=str), fmt.read_ids(file)):
                problems.append("ids of /rows and /features differ")
            status = file[fmt.ROW_STATUS][:]
            pending = int(np.count_nonzero(status == fmt.STATUS_PENDING))
            if pending:
                problems.append(f"{counted(pending, 'row')} never written")
            failed = fmt.read_ids(file)[status == fmt.STATUS_FAILED] if len(status) == shapes["ids"] else []
            if len(failed):
                named = ", ".join(failed[:SHOW_FAILED]) + (", ..." if len(failed) > SHOW_FAILED else "")
                report.warnings.append(f"{counted(len(failed), 'row')} failed to decode at extraction (stored as "
                                       f"zeros, flagged failed): {named}; if their images read now, "
                                       f"`{rebuild_command(provenance, path)}` extracts the store again")
            bad_rows, first = _count_non_finite(matrix)
            if bad_rows:
                problems.append(f"{counted(bad_rows, 'row')} with NaN or inf (first: row {first})")
    except FeatureStoreError as error:
        problems.append(str(error))
    return report


@dataclass(frozen=True)
class StoreCheck:
    """What ``verify_stores`` found of one store file. ``result``: ``"failed"`` (it has problems),
    ``"stale"`` (intact, but built from an earlier manifest of its dataset: rebuild it), ``"ok"``,
    or ``"writing"`` (another process is writing it: not verified, check it once that ends).
    Problems fail a store, warnings do not."""

    path: Path
    result: str
    stale: bool = False
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool | None:
        """True if the store has no problem, None if it was not verified (being written)."""
        return None if self.result == "writing" else not self.problems


def verify_stores(root=None, dataset: str | None = None, model: str | None = None) -> list[StoreCheck]:
    """Verify every store under the root (only ``dataset``'s, only ``model``'s, if given), in
    ``catalog`` order, with ``verify_file``; a store being written is not read, only listed
    (``"writing"``). A complete store's catalog ``problem`` (stale, or whether it is stale cannot be
    told) is a warning. ``StoreNotFound`` if no store matches."""
    frame = catalog(root, dataset)
    if model is not None:
        frame = frame[frame["model"] == model]
    if frame.empty:
        raise StoreNotFound(f"no store matches dataset={dataset or '*'} model={model or '*'}; "
                            "`featurestore ls` lists the stores")
    return [_check(entry) for entry in frame.to_dict("records")]


def _check(entry: dict) -> StoreCheck:
    """The check of one catalog row."""
    path = Path(entry["path"])
    # A store being written has nothing wrong with it yet: a check run during the nightly extraction
    # said FAILED ("another process is writing this store").
    if entry["writing"]:
        return StoreCheck(path, "writing", entry["stale"], warnings=[BEING_WRITTEN])
    report = verify_file(path)
    # A stale store is intact but no longer matches its dataset, and one whose dataset's manifest is
    # damaged cannot be compared with it: said as warnings (an unreadable store's problem is verify's own).
    noted = [entry["problem"]] if isinstance(entry["problem"], str) and (entry["complete"] or entry["stale"]) else []
    result = "failed" if report.problems else "stale" if entry["stale"] else "ok"
    return StoreCheck(path, result, entry["stale"], report.problems, report.warnings + noted)
