"""featurestore: pretrained vision backbones run once into HDF5 feature stores.

The library never imports Prefect; ``flows/`` and ``tasks/`` orchestrate it.
"""

from featurestore.store import catalog, load, load_arrays

__version__ = "0.1.0"
__all__ = ["catalog", "load", "load_arrays", "__version__"]
