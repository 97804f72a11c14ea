"""Planning: what each (dataset, model) store must be, decided without loading any model.

A job's ``StoreSpec`` is built from the manifest hash, the weights' SHA-256 (hashing a file is
not loading it), the preprocessing and the layer; its fingerprint decides whether the store
already exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from featurestore.backbones import Backbone, ResolvedWeights, get_backbone
from featurestore.extract.runtimes import effective_precision
from featurestore.errors import InvalidName, InvalidOption, StoreConflict, StoreStale
from featurestore.paths import resolve_root
from featurestore.store import RowTable, StoreSpec, store_state
from featurestore.store.paths import store_path
from featurestore.store.state import REPLACE_BY_EXTRACT


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: a contiguous slice of the manifest's rows."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise InvalidName(f"shard {self.index} of {self.count}: write INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/2")

    def bounds(self, rows: int) -> tuple[int, int]:
        """``[start, stop)`` rows of this shard; shards differ in size by at most one row."""
        return self.index * rows // self.count, (self.index + 1) * rows // self.count

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def label(self) -> str:
        return f"{self.index}-of-{self.count}"


WHOLE = Shard()  # the whole dataset: shard 0 of 1


def store_model_name(backbone: Backbone, layer: str) -> str:
    """Store key of (backbone, layer): the backbone name, suffixed for a non-default layer."""
    return backbone.name if layer == backbone.default_layer else f"{backbone.name}.{layer}"


def shard_root(root, dataset: str, model: str, shard: Shard) -> Path:
    """Root under which one shard's store lives: ``<root>/shards/<dataset>/<model>/<i>-of-<n>``.

    Shard stores are ordinary stores (same writer, same resume), kept out of ``<root>/stores``
    so that the catalog lists only whole stores.
    """
    return resolve_root(root) / "shards" / dataset / model / shard.label


@dataclass(frozen=True)
class Job:
    """One store to fill: a backbone at a layer with resolved weights, over one shard of a dataset."""

    backbone: Backbone
    layer: str
    weights: ResolvedWeights
    spec: StoreSpec
    rows: RowTable
    shard: Shard
    root: object  # root the store lives under (a shard root for shards)

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def path(self) -> Path:
        return store_path(self.spec.dataset, self.spec.model, self.root)

    def state(self, redo_failed: bool = False, replace_by: str = REPLACE_BY_EXTRACT) -> str:
        """``missing``, ``partial`` or ``complete`` (``StoreConflict`` if another store is there);
        ``redo_failed`` and ``replace_by`` as in ``store_state``."""
        return store_state(self.spec, self.root, redo_failed=redo_failed, replace_by=replace_by)

    def pending(self, overwrite: bool = False, replace_stale: bool = False, replace_by: str = REPLACE_BY_EXTRACT) -> bool:
        """True if the store must be written: it is not complete, or it was built from other inputs
        and may be replaced (any other inputs with ``overwrite``; with ``replace_stale`` only an
        earlier manifest of the dataset), or ``overwrite`` is given and it holds rows that failed at
        extraction. A store that may not be replaced raises its conflict; a
        file there that cannot be read as a store (``StoreCorrupt``: damaged, not a store, a
        directory) is never replaced, even with ``overwrite``: it may be the user's. ``replace_by``: what
        a conflict's message tells to do to replace the store (``store_state``)."""
        try:
            return self.state(redo_failed=overwrite, replace_by=replace_by) != "complete"
        except StoreStale:
            if overwrite or replace_stale:
                return True
            raise
        except StoreConflict:
            if overwrite:
                return True
            raise


def make_spec(dataset: str, manifest_hash: str, backbone: Backbone, layer: str, weights: ResolvedWeights,
              shard: Shard = WHOLE, precision: str | None = None, require_precision: bool = False) -> StoreSpec:
    """The store request for (dataset, backbone, layer, weights), optionally one shard of it;
    ``precision`` and ``require_precision`` as in ``StoreSpec`` (not part of the fingerprint)."""
    preprocessing = backbone.store_preprocessing(layer)
    if not shard.whole:
        preprocessing["shard"] = [shard.index, shard.count]
    return StoreSpec(dataset=dataset, model=store_model_name(backbone, layer), manifest_hash=manifest_hash,
                     weights_sha256=weights.sha256, preprocessing=preprocessing, dim=backbone.layers[layer].dim,
                     precision=precision, require_precision=require_precision)


def parse_weights(entries: Sequence[str], models: Sequence[str]) -> dict[str, str]:
    """``--weights FILE`` (one model) or ``--weights MODEL=FILE`` (any number), each for one of
    ``models``, as ``{model: file}`` (``featurestore extract`` and ``python -m flows.extract``).

    With one model, an existing file whose path holds ``=`` (``epoch=3-step=120.ckpt``) is that
    model's file, not ``MODEL=FILE``."""
    mapping = {}
    for entry in entries:
        model, sep, path = entry.partition("=")
        if not sep or (len(models) == 1 and model not in models and Path(entry).exists()):
            if len(models) != 1:
                raise InvalidName(f"--weights {entry}: with several models write --weights MODEL=FILE")
            model, path = models[0], entry
        mapping[model] = path
    check_weights(mapping, models)
    return mapping


def check_weights(weights: Mapping[str, str], models: Sequence[str]) -> None:
    """``InvalidName`` if ``weights`` names a model outside ``models``: its file would go unused.

    For a run's whole request: ``plan_jobs`` takes weights for every model of a run while it
    may plan only some of them (the extract flow plans the pending ones), so it cannot check.
    """
    for name, path in weights.items():
        if name not in models:
            raise InvalidName(f"--weights {name}={path}: {name!r} is not among the models of this run "
                              f"({', '.join(dict.fromkeys(models))}); add it to --models or fix the name")


def plan_jobs(manifest, dataset: str, models: Sequence[str], root=None, *, weights: Mapping[str, str] | None = None,
              layer: str | None = None, shard: Shard = WHOLE, download: bool = True, device: str | None = None,
              runtime: str | None = None, precision: str | None = None) -> list[Job]:
    """One ``Job`` per model; weights are located and hashed, never loaded.

    Given the resolved ``device`` (and ``runtime``, ``precision`` as for extract), or an explicit
    ``precision``, each spec says the precision its rows are computed in: a partial started in
    another one is not resumed. An explicit ``precision`` also makes a complete store recorded in
    another precision a conflict (replaced with overwrite); without one any complete store serves.
    """
    weights = dict(weights or {})
    rows = RowTable.from_manifest(manifest.frame, manifest.classes)
    if shard.count > len(rows):
        raise InvalidOption(f"--shard {shard.index}/{shard.count}: {dataset} has {len(rows)} rows, fewer than the "
                            f"{shard.count} shards; split it into at most {len(rows)} shards")
    start, stop = shard.bounds(len(rows))
    if not shard.whole:
        rows = RowTable.from_manifest(manifest.frame.iloc[start:stop], manifest.classes)
    jobs = []
    for name in dict.fromkeys(models):
        backbone = get_backbone(name)
        chosen = backbone.layer(layer)
        resolved = backbone.weights.resolve(weights.get(name), download=download)
        computes_in = effective_precision(backbone, device, runtime, precision) if device or precision else None
        spec = make_spec(dataset, manifest.hash, backbone, chosen, resolved, shard, computes_in, precision is not None)
        job_root = root if shard.whole else shard_root(root, dataset, spec.model, shard)
        jobs.append(Job(backbone, chosen, resolved, spec, rows, shard, job_root))
    return jobs
