"""The on-disk format of a feature store, in one place.

One HDF5 file per (dataset, model) at ``<root>/stores/<dataset>/<model>.h5``. While it is
being written the file is ``<model>.h5.partial``; renaming it to ``<model>.h5`` is the atomic
completion mark. ``docs/store-format.md`` documents every field listed here.

Layout (every pandas-visible key is a group pandas wrote itself or a byte-for-byte copy of
what pandas writes, so ``pd.read_hdf(path, key)`` works without featurestore):

* ``/features`` pandas "fixed" frame: index = image id, columns ``f0000``..; its
  ``block0_values`` is the feature matrix itself (rows x dim, contiguous, allocated at creation
  so that filling it never changes HDF5 metadata: a killed writer cannot corrupt the file).
* ``/rows`` pandas "table" frame: index = image id; label, class_name, split, fold.
* ``/provenance`` pandas "table" frame: one row per provenance field (field, value as JSON).
* ``/_extraction/committed_rows`` int64[1]: rows ``[0, committed_rows)`` are durable.
* ``/_extraction/row_status`` int8[rows]: 0 pending, 1 ok, 2 failed to decode.
* root attributes: ``featurestore_schema_version`` (int), ``featurestore_provenance`` (JSON),
  ``featurestore_fingerprint`` (hex), ``featurestore_complete`` (uint8, 1 once complete).

Beside it in ``featurestore/store/``: ``paths.py`` (where a store's files lie), ``h5io.py`` (opening,
allocating and fsyncing them; damage as one-line errors) and ``advice.py`` (the commands messages suggest).
"""

from __future__ import annotations

import h5py
import numpy as np

SCHEMA_VERSION = 1

SUFFIX = ".h5"
PARTIAL_SUFFIX = ".h5.partial"
LOCK_SUFFIX = ".h5.lock"

FEATURES_KEY = "features"
ROWS_KEY = "rows"
PROVENANCE_KEY = "provenance"
MATRIX = f"{FEATURES_KEY}/block0_values"
ROW_INDEX = f"{FEATURES_KEY}/axis1"
EXTRACTION_GROUP = "_extraction"
COMMITTED = f"{EXTRACTION_GROUP}/committed_rows"
ROW_STATUS = f"{EXTRACTION_GROUP}/row_status"

ATTR_SCHEMA = "featurestore_schema_version"
ATTR_PROVENANCE = "featurestore_provenance"
ATTR_FINGERPRINT = "featurestore_fingerprint"
ATTR_COMPLETE = "featurestore_complete"

STATUS_PENDING, STATUS_OK, STATUS_FAILED = 0, 1, 2
DTYPES = ("float32", "float16")


def feature_columns(dim: int) -> list[str]:
    """Column names of the feature matrix in pandas: f0000, f0001, ..."""
    width = max(4, len(str(dim - 1)))
    return [f"f{i:0{width}d}" for i in range(dim)]


def read_ids(file: h5py.File, stop: int | None = None) -> np.ndarray:
    """The image ids of ``/features`` (the first ``stop`` only, if given) as str, decoded from the
    UTF-8 bytes the writer stores."""
    return np.char.decode(file[ROW_INDEX][:stop], "utf-8")
