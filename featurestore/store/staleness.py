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
from featurestore.store.paths import dataset_root_of, root_of


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
    return f"{earlier_manifest(provenance['dataset'])}; {rebuild_advice(provenance, path)}"


def rebuild_advice(provenance: dict, path: Path) -> str:
    """How to build the stale store with ``provenance`` (at ``path``) again from its dataset's current
    manifest: ``rebuild it with `extract ...```, or for a merge of shards, whose shards were built
    from the same earlier manifest, each shard's extract and then the merge."""
    merge = provenance.get("extra", {}).get("merge")
    if not merge:
        return f"rebuild it with `{rebuild_command(provenance, path)}`"
    count = merge["count"]
    shards = ", ".join(map(str, range(count)))
    return (f"rebuild its shards with `{rebuild_command(provenance, path, ('--shard', f'I/{count}'))}` for I = "
            f"{shards} (each where it ran), then merge them with "
            f"`{merge_command(provenance['dataset'], provenance['model'], provenance['extra'], root_of(path), '--overwrite')}`")


def rebuild_command(provenance: dict, path: Path, shard_options: tuple[str, ...] | None = None) -> str:
    """The ``featurestore extract`` command that builds the store with ``provenance`` (at ``path``)
    again from its dataset's current manifest: same backbone, layer, weights file and shard (or
    ``shard_options``), and its root (an ONNX backbone needs the spec that registered it, which the
    store does not record)."""
    extra = provenance.get("extra", {})
    model = provenance["model"]
    backbone = extra.get("backbone", model)
    shard = provenance.get("preprocessing", {}).get("shard")
    if shard_options is None:
        shard_options = ("--shard", f"{shard[0]}/{shard[1]}") if shard else ()
    return extract_command(provenance["dataset"], backbone, extra.get("layer", model.partition(".")[2]),
                           model != backbone, str(extra.get("weights_source", "")),
                           str(extra.get("architecture", "")), *shard_options, "--overwrite",
                           *root_options(dataset_root_of(path)))


def merge_command(dataset: str, model: str, extra: dict, root, *options: str) -> str:
    """The ``featurestore merge-shards`` command (on ``root``) that builds the store of ``model`` on
    ``dataset`` from its shards, as its provenance ``extra`` describes it: backbone, architecture,
    layer, weights source and ``merge``, ``{"count": shards}``; then ``options``."""
    backbone = extra.get("backbone", model)
    command = extract_command(dataset, backbone, str(extra.get("layer", "")), model != backbone,
                              str(extra.get("weights_source", "")), str(extra.get("architecture", "")),
                              "--count", str(extra["merge"]["count"]), *root_options(root), *options)
    # merge-shards selects the store with the very words extract does (-d, -m, --layer, --weights, --onnx-spec).
    return "featurestore merge-shards" + command.removeprefix("featurestore extract")


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
