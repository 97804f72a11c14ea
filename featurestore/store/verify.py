"""Checking a store's integrity: what `featurestore verify` reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featurestore.errors import FeatureStoreError
from featurestore.store import format as fmt
from featurestore.store.catalog import final_path_of
from featurestore.store.lock import holder_of
from featurestore.store.reader import check_header, interrupted_merge, read_frame, rows_of
from featurestore.store.spec import FINGERPRINT_FIELDS, fingerprint_of
from featurestore.store.staleness import rebuild_command

SCAN_ROWS = 8192
SHOW_FAILED = 3  # failed ids named in the warning; the rest are counted


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
    writer = holder_of(fmt.lock_path(final))
    if writer:
        return f"extraction in progress: {writer} is writing it; wait for it to finish"
    merge = interrupted_merge(partial)
    if final.exists():
        # Only `--overwrite` builds a partial beside a complete store; without the flag extract and merge-shards refuse.
        resume = f"run `{merge}`" if merge else "run extract again with --overwrite"
        return (f"interrupted `{'merge-shards' if merge else 'extract'} --overwrite` (partial file beside the complete "
                f"store); {resume} to resume it, or `{fmt.rm_command(partial)}` to drop it")
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
        with fmt.open_store(path) as file:
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
                problems.append(f"{pending} rows were never written")
            failed = fmt.read_ids(file)[status == fmt.STATUS_FAILED] if len(status) == shapes["ids"] else []
            if len(failed):
                named = ", ".join(failed[:SHOW_FAILED]) + (", ..." if len(failed) > SHOW_FAILED else "")
                report.warnings.append(f"{len(failed)} rows failed to decode at extraction (stored as zeros, "
                                       f"flagged failed): {named}; if their images read now, "
                                       f"`{rebuild_command(provenance, path)}` extracts the store again")
            bad_rows, first = _count_non_finite(matrix)
            if bad_rows:
                problems.append(f"{bad_rows} rows contain NaN or inf (first: row {first})")
    except FeatureStoreError as error:
        problems.append(str(error))
    return report
