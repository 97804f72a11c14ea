"""Joining shard stores into one store (design: docs/sharding.md).

Shard ``i`` of ``n`` holds a contiguous slice of the manifest's rows and is an ordinary store
under ``<root>/shards/<dataset>/<model>/<i>-of-<n>/``, written on any device or host. The merge
checks that every shard was built from this manifest, these weights and this preprocessing
(its fingerprint) and was computed in one precision, then streams them in row order through one
``StoreWriter``: memory stays flat, and an interrupted merge resumes like an interrupted extraction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from featurestore.errors import FeatureStoreError, InvalidOption, StoreIncomplete
from featurestore.extract.plan import Job, Shard, make_spec, plan_jobs, shard_root
from featurestore.extract.runner import ExtractResult
from featurestore.paths import resolve_root
from featurestore.store import StoreSpec, StoreWriter
from featurestore.store import format as fmt
from featurestore.store.advice import root_options, unfinished_under_final_name
from featurestore.store.h5io import open_h5
from featurestore.store.lock import holder_of
from featurestore.store.paths import lock_path, partial_path, store_path
from featurestore.store.provenance import library_versions, precision_name, read_provenance, recorded_precision
from featurestore.store.reader import check_header
from featurestore.store.spec import canonical_json
from featurestore.store.staleness import extract_command, merge_command
from featurestore.store.state import differences

CHUNK_ROWS = 4096


class ShardMissing(StoreIncomplete):
    """A shard store needed for a merge is absent, incomplete or built from other inputs; ``unready``
    names those shards as ``--shard`` takes them (``1/2``)."""

    unready: tuple[str, ...] = ()


class ShardsDisagree(FeatureStoreError):
    """The shards of one store were computed in different precisions: merged, they would mix them."""


def _shard_command(job: Job, shard: str, root, *options: str) -> str:
    """The ``featurestore extract`` command that builds shard ``shard`` (``I/N``) of ``job``'s store."""
    return extract_command(job.spec.dataset, job.backbone.name, job.layer, job.model != job.backbone.name,
                           job.weights.source, job.backbone.architecture, "--shard", shard, *root_options(root),
                           *options)


def _merge_extra(job: Job, count: int) -> dict:
    """What a merged store's provenance ``extra`` says of how it was built, recorded in its partial file as
    the merge starts: an interrupted merge is then told from an interrupted extraction, and resumed
    with the ``merge-shards`` command (``staleness.merge_command``) rather than computed again."""
    return {"backbone": job.backbone.name, "architecture": job.backbone.architecture, "layer": job.layer,
            "weights_source": job.weights.source, "merge": {"count": count}}


def _common_precision(job: Job, shards, provenances, root) -> str | None:
    """The one precision every shard was computed in (None: none recorded), else ``ShardsDisagree``."""
    precisions = [recorded_precision(p) for p in provenances]
    if len(set(precisions)) > 1:
        listed = ", ".join(f"{shard.label} {precision_name(p)}" for (shard, _, _), p in zip(shards, precisions))
        raise ShardsDisagree(
            f"{job.spec.dataset}/{job.model}: its shards were computed in different precisions ({listed}); a merge "
            f"would mix them: extract the odd shards again with "
            f"`{_shard_command(job, f'I/{len(shards)}', root, '--precision P', '--overwrite')}`, P the others' "
            "precision")
    return precisions[0]


def _shard_paths(job: Job, count: int, manifest_hash: str, root) -> list[tuple[Shard, Path, StoreSpec]]:
    """(shard, path, expected request) of every shard of ``job``'s store."""
    out = []
    for index in range(count):
        shard = Shard(index, count)
        spec = make_spec(job.spec.dataset, manifest_hash, job.backbone, job.layer, job.weights, shard)
        out.append((shard, store_path(spec.dataset, spec.model, shard_root(root, spec.dataset, spec.model, shard)),
                    spec))
    return out


def _check_shard(job: Job, path: Path, spec: StoreSpec, shard: Shard, root) -> tuple[dict | None, str | None]:
    """``(provenance, None)`` for shard ``shard`` (at ``path``, requested as ``spec``) if it is complete and
    matches, else ``(None, what keeps it out of a merge, with the command that mends it)``. A damaged
    shard raises ``StoreCorrupt``."""
    command = _shard_command(job, f"{shard.index}/{shard.count}", root)
    where = f"shard {shard.label} ({path})"
    if not path.exists():
        partial = partial_path(path)
        writer = holder_of(lock_path(path)) if partial.exists() else None
        if writer:
            return None, f"{where} is being written by {writer}: wait for it to finish"
        if partial.exists():
            return None, f"{where} was interrupted: run `{command}` to resume it"
        return None, f"{where} is missing: run `{command}` (here, or elsewhere and copy its store there)"
    with open_h5(path) as file:
        provenance = check_header(file, path)
        if not bool(file.attrs.get(fmt.ATTR_COMPLETE, False)):
            unfinished = unfinished_under_final_name(int(file[fmt.COMMITTED][0]), provenance["rows"])
            return None, f"{where} is {unfinished}: run `{command} --overwrite`"
        if str(file.attrs.get(fmt.ATTR_FINGERPRINT, "")) != spec.fingerprint:
            return None, (f"{where} differs from this request ({'; '.join(differences(provenance, spec).values())}): "
                          f"run `{command} --overwrite`")
    return provenance, None


def _check_shards(job: Job, shards, root) -> list[dict]:
    """The provenance of every shard, or one error naming each shard that keeps the merge from
    running and what mends it (all at once: not one shard per run). It is ``ShardMissing`` unless a
    shard cannot be read (damaged, misplaced): then that shard's error type (``StoreCorrupt``), so
    that a flow's merge fails on it rather than waiting for the shard."""
    provenances, problems, unready = [], [], []
    kind = ShardMissing
    for shard, path, spec in shards:
        try:
            provenance, problem = _check_shard(job, path, spec, shard, root)
        except FeatureStoreError as error:
            provenance, problem = None, f"shard {shard.label}: {error}"
            kind = type(error) if kind is ShardMissing else kind
        provenances.append(provenance)
        if problem:
            problems.append(problem)
            unready.append(f"{shard.index}/{shard.count}")
    if not problems:
        return provenances
    labels = {p.name for p in (resolve_root(root) / "shards" / job.spec.dataset / job.model).glob("*-of-*")}
    others = sorted(labels - {shard.label for shard, _, _ in shards})
    error = kind(
        f"{job.spec.dataset}/{job.model}: {len(problems)} of the {len(shards)} shards cannot be merged: "
        + "; ".join(problems)
        + (f"; shards of other counts are here ({', '.join(others)}): give --count as at extraction" if others else ""))
    if isinstance(error, ShardMissing):
        error.unready = tuple(unready)
    raise error


def merge_shards(dataset: str, models: Sequence[str], count: int, root=None, *, weights: Mapping[str, str] | None = None,
                 layer: str | None = None, overwrite: bool = False, replace_stale: bool = False,
                 download: bool = True, manifest=None) -> list[ExtractResult]:
    """Join the ``count`` shard stores of each model into ``<root>/stores/<dataset>/<model>.h5``;
    ``overwrite`` and ``replace_stale`` as for ``featurestore.extract.extract``."""
    if count < 1:
        raise InvalidOption(f"--count {count}: the shard count is not positive; give the count used at extraction")
    if manifest is None:
        from featurestore.datasets.manifest import load_manifest

        manifest = load_manifest(dataset, root)
    if count > len(manifest.frame):
        # extract --shard refuses more shards than rows, so no extraction made these.
        raise InvalidOption(f"--count {count}: {dataset} has {len(manifest.frame)} rows, fewer than the {count} "
                            "shards, so no extraction made them; give the count used at extraction")
    results = []
    for job in plan_jobs(manifest, dataset, models, root, weights=weights, layer=layer, download=download):
        # What replaces a merged store is merge-shards --overwrite: extract would compute every row on this host.
        merge = merge_command(dataset, job.model, _merge_extra(job, count), root, "--overwrite")
        if not job.pending(overwrite, replace_stale, replace_by=f"merge again with `{merge}` (overwrite=True)"):
            results.append(ExtractResult(dataset, job.model, job.path, "skipped", len(job.rows),
                                         fingerprint=job.spec.fingerprint))
            continue
        shards = _shard_paths(job, count, manifest.hash, root)
        provenances = _check_shards(job, shards, root)
        # The merged store records its shards' precision, so resuming a merge checks it like an extraction.
        job = dataclasses.replace(job, spec=dataclasses.replace(
            job.spec, precision=_common_precision(job, shards, provenances, root)))
        results.append(_merge(job, shards, provenances, root, overwrite or replace_stale))
    return results


def _merge(job: Job, shards, provenances, root, overwrite: bool) -> ExtractResult:
    written = failed = 0
    extra = _merge_extra(job, len(shards))
    with StoreWriter.open(job.spec, job.rows, root, overwrite=overwrite) as writer:
        resumed = writer.committed_rows > 0
        if writer.created:
            _mark_as_merge(writer.path, extra)
        for shard, path, _ in shards:
            start, stop = shard.bounds(len(job.rows))
            with open_h5(path) as file:
                matrix, status = file[fmt.MATRIX], file[fmt.ROW_STATUS]
                # An interrupted merge resumes at the first row not yet committed.
                for lo in range(max(start, writer.position), stop, CHUNK_ROWS):
                    hi = min(lo + CHUNK_ROWS, stop)
                    bad = status[lo - start:hi - start] == fmt.STATUS_FAILED
                    writer.write(matrix[lo - start:hi - start], bad)
                    written += hi - lo
                    failed += int(np.count_nonzero(bad))
        merged_from = [{"shard": shard.label, "fingerprint": provenance["fingerprint"],
                        "runtime": provenance.get("extra", {}).get("runtime"),
                        "precision": recorded_precision(provenance),
                        "device": provenance.get("extra", {}).get("device")}
                       for (shard, _, _), provenance in zip(shards, provenances, strict=True)]
        writer.finalize({**extra, "library_versions": _shard_library_versions(provenances), "merged_from": merged_from})
        path = writer.path
    return ExtractResult(job.spec.dataset, job.model, path, "resumed" if resumed else "merged", len(job.rows),
                         written, failed, fingerprint=job.spec.fingerprint)


def _mark_as_merge(final: Path, extra: dict) -> None:
    """Record ``extra`` (``_merge_extra``) in the provenance of the partial file a merge has just created.

    Its writer holds the file open: HDF5 shares that handle within the process, so this open sees
    and updates the same file, and the writer's ``finalize`` keeps the record."""
    with open_h5(partial_path(final), "r+") as file:
        provenance = read_provenance(file)
        provenance["extra"].update(extra)
        file.attrs[fmt.ATTR_PROVENANCE] = canonical_json(provenance)


def _shard_library_versions(provenances) -> dict[str, str]:
    """The versions of the libraries that computed the shards' rows (torch, onnxruntime...): those the
    shards recorded and the merging process does not, each package's distinct versions joined by ", "."""
    own = library_versions()
    found: dict[str, dict[str, None]] = {}
    for provenance in provenances:
        for package, number in provenance.get("library_versions", {}).items():
            if package not in own:
                found.setdefault(package, {})[number] = None
    return {package: ", ".join(numbers) for package, numbers in found.items()}
