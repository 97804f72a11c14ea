"""The provenance record every store carries, and how it is read back."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import h5py
import numpy as np
import pandas as pd

from featurestore.store.format import ATTR_PROVENANCE, SCHEMA_VERSION
from featurestore.store.spec import RowTable, StoreSpec, canonical_json


def utc_now() -> str:
    """Current time as ISO 8601 in UTC, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a store's bytes."""
    versions = {"python": platform.python_version(), "hdf5": h5py.version.hdf5_version}
    for package in ("featurestore", "numpy", "h5py", "pandas", "tables"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def new_provenance(spec: StoreSpec, rows: RowTable) -> dict:
    """Provenance of a store that is about to be written."""
    return {
        "schema_version": SCHEMA_VERSION,
        **spec.fingerprint_fields(),
        "fingerprint": spec.fingerprint,
        "rows": len(rows),
        "classes": list(rows.class_names),
        "library_versions": library_versions(),
        "created_at": utc_now(),
        "completed_at": None,
        "complete": False,
        "failed_rows": None,
        # Recorded now, not at completion: a resume must compute its rows the same way.
        "precision": spec.precision,
        "extra": {},
    }


def recorded_precision(provenance: dict, *, at_creation: bool = False) -> str | None:
    """The precision a store's rows were computed in, as its provenance records it (None: unknown).

    Stores made before the top-level field existed name only their last pass's precision, under
    ``extra``; ``at_creation`` ignores that (a partial's rows may come from several passes).
    """
    if provenance.get("precision") or at_creation:
        return provenance.get("precision")
    return provenance.get("extra", {}).get("precision")


def precision_name(precision: str | None) -> str:
    """A recorded precision for a message."""
    return precision or "an unrecorded precision"


def provenance_frame(provenance: dict) -> pd.DataFrame:
    """Provenance as the two-column table pandas users read under ``/provenance``."""
    fields = list(provenance)
    return pd.DataFrame(
        {"value": [canonical_json(provenance[f]) for f in fields]},
        index=pd.Index(fields, name="field"),
    )


def read_provenance(file: h5py.File) -> dict:
    """The provenance record stored in a store's root attributes."""
    return json.loads(file.attrs[ATTR_PROVENANCE])


def count_failed(status: np.ndarray, failed_code: int) -> int:
    """Number of rows whose image could not be decoded."""
    return int(np.count_nonzero(status == failed_code))
