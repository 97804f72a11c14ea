"""Stale stores: built from an earlier manifest of their dataset, which was ingested again since.

A stale store is intact (``verify`` passes it) but its rows, labels and split are those of the
old manifest: evaluate skips it, ``ls`` lists it as ``stale``, ``load`` warns, and extract
refuses to mix it with the new manifest (``StoreStale``) unless told to replace it.
"""

from __future__ import annotations

import shlex
import warnings
from pathlib import Path

from featurestore.backbones.onnx_file import ONNX_ARCHITECTURE
from featurestore.backbones.weights import FILE_SOURCE_PREFIX
from featurestore.datasets.manifest import current_manifest_hash
from featurestore.store.advice import root_options
from featurestore.store.paths import dataset_root_of


class StaleStoreWarning(UserWarning):
    """A store was loaded whose dataset was ingested again after it was built."""


def earlier_manifest(dataset: str) -> str:
    """The phrase every message uses for a stale store of ``dataset``."""
    return f"built from an earlier manifest of {dataset!r} (ingested again since)"


def stale_reason(provenance: dict, current: str | None, path: Path) -> str | None:
    """Why the store with ``provenance`` (at ``path``) is stale, with the command that rebuilds it,
    or ``None`` if it matches ``current``, its dataset's manifest hash now (or the dataset has none
    here, ``current`` None: a store copied without its dataset has nothing to be compared with)."""
    if current is None or current == provenance["manifest_hash"]:
        return None
    return f"{earlier_manifest(provenance['dataset'])}; rebuild it with `{rebuild_command(provenance, path)}`"


def rebuild_command(provenance: dict, path: Path) -> str:
    """The ``featurestore extract`` command that builds the store with ``provenance`` (at ``path``)
    again from its dataset's current manifest: same backbone, layer, weights file and shard, and its
    root (an ONNX backbone needs the spec that registered it, which the store does not record)."""
    extra = provenance.get("extra", {})
    model = provenance["model"]
    backbone = extra.get("backbone", model)
    shard = provenance.get("preprocessing", {}).get("shard")
    options = ("--shard", f"{shard[0]}/{shard[1]}") if shard else ()
    return extract_command(provenance["dataset"], backbone, extra.get("layer", model.partition(".")[2]),
                           model != backbone, str(extra.get("weights_source", "")),
                           str(extra.get("architecture", "")), *options, "--overwrite",
                           *root_options(dataset_root_of(path)))


def extract_command(dataset: str, backbone: str, layer: str, named_by_layer: bool, weights_source: str,
                    architecture: str, *options: str) -> str:
    """The ``featurestore extract`` command for a store of ``backbone`` at ``layer`` from the same
    weights: ``--layer`` where the store is named by it (a non-default layer), ``--weights FILE``
    for weights from a file, ``--onnx-spec SPEC.json`` for an ONNX backbone; then ``options``."""
    words = ["featurestore extract", f"-d {dataset}", f"-m {backbone}"]
    if named_by_layer:
        words.append(f"--layer {layer}")
    if architecture.startswith(ONNX_ARCHITECTURE):
        words.append("--onnx-spec SPEC.json")
    elif weights_source.startswith(FILE_SOURCE_PREFIX):
        words.append(f"--weights {shlex.quote(weights_source.removeprefix(FILE_SOURCE_PREFIX))}")
    return " ".join([*words, *options])


def warn_if_stale(provenance: dict, path: Path, root=None) -> None:
    """Warn (``StaleStoreWarning``) when the store at ``path`` is loaded stale: its split is not
    the current one.

    Called by the public loader itself, so the warning points at the caller's line."""
    reason = stale_reason(provenance, current_manifest_hash(provenance["dataset"], root), path)
    if reason:
        warnings.warn(f"{provenance['dataset']}/{provenance['model']}: store {reason}", StaleStoreWarning,
                      stacklevel=3)
