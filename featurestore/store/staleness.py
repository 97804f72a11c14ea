"""Stale stores: built from an earlier manifest of their dataset, which was ingested again since.

A stale store is intact (``verify`` passes it) but its rows, labels and split are those of the
old manifest: evaluate skips it, ``ls`` lists it as ``stale``, ``load`` warns, and extract
refuses to mix it with the new manifest (``StoreStale``) unless told to replace it.
"""

from __future__ import annotations

import warnings


class StaleStoreWarning(UserWarning):
    """A store was loaded whose dataset was ingested again after it was built."""


def earlier_manifest(dataset: str) -> str:
    """The phrase every message uses for a stale store of ``dataset``."""
    return f"built from an earlier manifest of {dataset!r} (ingested again since)"


def stale_reason(dataset: str, model: str, manifest_hash: str, root=None) -> str | None:
    """Why the (dataset, model) store built from ``manifest_hash`` is stale, with the command that
    rebuilds it, or ``None`` if it matches the current manifest (or the dataset has none here:
    a store copied without its dataset has nothing to be compared with)."""
    from featurestore.datasets.manifest import current_manifest_hash  # the store layer reads no manifest otherwise

    current = current_manifest_hash(dataset, root)
    if current is None or current == manifest_hash:
        return None
    return f"{earlier_manifest(dataset)}; rebuild it with `featurestore extract -d {dataset} -m {model} --overwrite`"


def warn_if_stale(dataset: str, model: str, manifest_hash: str, root=None) -> None:
    """Warn (``StaleStoreWarning``) when a stale store is loaded: its split is not the current one."""
    reason = stale_reason(dataset, model, manifest_hash, root)
    if reason:
        warnings.warn(f"{dataset}/{model}: store {reason}", StaleStoreWarning, stacklevel=3)
