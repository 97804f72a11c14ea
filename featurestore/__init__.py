"""featurestore: pretrained vision backbones run once into HDF5 feature stores.

The library never imports Prefect; ``flows/`` and ``tasks/`` orchestrate it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["catalog", "load", "load_arrays", "__version__"]


def __getattr__(name: str):
    # The readers pull in pandas and h5py (~0.4 s): loaded on first use, so that the command line
    # and the errors module start without them.
    if name in ("catalog", "load", "load_arrays"):
        return getattr(importlib.import_module("featurestore.store"), name)
    raise AttributeError(f"module 'featurestore' has no attribute {name!r}")
