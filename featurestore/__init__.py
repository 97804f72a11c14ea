"""featurestore: pretrained vision backbones run once into HDF5 feature stores.

The library never imports Prefect; ``flows/`` and ``tasks/`` orchestrate it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
_FROM_STORE = ("catalog", "load", "load_arrays", "remove_store", "verify_stores")
__all__ = [*_FROM_STORE, "__version__"]


def __getattr__(name: str):
    # The store functions pull in pandas and h5py (~0.4 s): loaded on first use, so that the command line
    # and the errors module start without them.
    if name in _FROM_STORE:
        return getattr(importlib.import_module("featurestore.store"), name)
    raise AttributeError(f"module 'featurestore' has no attribute {name!r}")
