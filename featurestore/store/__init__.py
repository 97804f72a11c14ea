"""The feature store: HDF5 files keyed by (dataset, model). Format: ``featurestore/store/format.py``."""

from featurestore.store.catalog import catalog, store_files
from featurestore.store.format import SCHEMA_VERSION
from featurestore.store.paths import store_path
from featurestore.store.reader import StoreArrays, load, load_arrays, locate, read_arrays
from featurestore.store.remove import remove_store
from featurestore.store.spec import RowTable, StoreSpec
from featurestore.store.state import store_state
from featurestore.store.verify import StoreCheck, VerifyReport, verify_file, verify_stores
from featurestore.store.writer import StoreWriter

__all__ = [
    "SCHEMA_VERSION", "RowTable", "StoreArrays", "StoreCheck", "StoreSpec", "StoreWriter", "VerifyReport",
    "catalog", "load", "load_arrays", "locate", "read_arrays", "remove_store", "store_files", "store_path",
    "store_state", "verify_file", "verify_stores",
]
