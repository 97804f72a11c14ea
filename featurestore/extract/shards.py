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

import numpy as np

from featurestore.errors import FeatureStoreError, InvalidOption, StoreIncomplete
from featurestore.extract.plan import Job, Shard, make_spec, plan_jobs, shard_root
from featurestore.extract.runner import ExtractResult
from featurestore.store import StoreWriter
from featurestore.store import format as fmt
from featurestore.store.provenance import precision_name, recorded_precision
from featurestore.store.reader import check_header
from featurestore.store.staleness import extract_command

CHUNK_ROWS = 4096


class ShardMissing(StoreIncomplete):
    """A shard store needed for a merge is absent, incomplete or built from other inputs."""


class ShardsDisagree(FeatureStoreError):
    """The shards of one store were computed in different precisions: merged, they would mix them."""


def _shard_command(job: Job, shard: str, *options: str) -> str:
    """The ``featurestore extract`` command that builds shard ``shard`` (``I/N``) of ``job``'s store."""
    return extract_command(job.spec.dataset, job.backbone.name, job.layer, job.model != job.backbone.name,
                           job.weights.source, job.backbone.architecture, "--shard", shard, *options)


def _common_precision(job: Job, shards, provenances) -> str | None:
    """The one precision every shard was computed in (None: none recorded), else ``ShardsDisagree``."""
    precisions = [recorded_precision(p) for p in provenances]
    if len(set(precisions)) > 1:
        listed = ", ".join(f"{shard.label} {precision_name(p)}" for (shard, _, _), p in zip(shards, precisions))
        raise ShardsDisagree(
            f"{job.spec.dataset}/{job.model}: its shards were computed in different precisions ({listed}); a merge "
            f"would mix them: extract the odd shards again with "
            f"`{_shard_command(job, f'I/{len(shards)}', '--precision P', '--overwrite')}`, P the others' precision")
    return precisions[0]


def _shard_paths(job: Job, count: int, manifest_hash: str, root) -> list[tuple[Shard, object, str]]:
    """(shard, path, expected fingerprint) of every shard of ``job``'s store."""
    out = []
    for index in range(count):
        shard = Shard(index, count)
        spec = make_spec(job.spec.dataset, manifest_hash, job.backbone, job.layer, job.weights, shard)
        out.append((shard, fmt.store_path(spec.dataset, spec.model, shard_root(root, spec.dataset, spec.model, shard)),
                    spec.fingerprint))
    return out


def _check_shard(job: Job, path, fingerprint: str, shard: Shard) -> dict:
    model = job.model
    command = _shard_command(job, f"{shard.index}/{shard.count}")
    hint = f"run `{command}` (here, or elsewhere and copy its store there)"
    if not path.exists():
        raise ShardMissing(f"{path}: shard {shard.label} of {model} is missing; {hint}")
    with fmt.open_h5(path) as file:
        provenance = check_header(file, path)
        if not bool(file.attrs.get(fmt.ATTR_COMPLETE, False)):
            raise ShardMissing(f"{path}: shard {shard.label} of {model} is incomplete; {hint}")
        if str(file.attrs.get(fmt.ATTR_FINGERPRINT, "")) != fingerprint:
            raise ShardMissing(f"{path}: shard {shard.label} of {model} was built from other inputs; "
                               f"run `{command} --overwrite` to rebuild it from the current ones")
    return provenance


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
    results = []
    for job in plan_jobs(manifest, dataset, models, root, weights=weights, layer=layer, download=download):
        if not job.pending(overwrite, replace_stale):
            results.append(ExtractResult(dataset, job.model, job.path, "skipped", len(job.rows),
                                         fingerprint=job.spec.fingerprint))
            continue
        shards = _shard_paths(job, count, manifest.hash, root)
        provenances = [_check_shard(job, path, fingerprint, shard) for shard, path, fingerprint in shards]
        # The merged store records its shards' precision, so resuming a merge checks it like an extraction.
        job = dataclasses.replace(job, spec=dataclasses.replace(
            job.spec, precision=_common_precision(job, shards, provenances)))
        results.append(_merge(job, shards, provenances, root, overwrite or replace_stale))
    return results


def _merge(job: Job, shards, provenances, root, overwrite: bool) -> ExtractResult:
    written = failed = 0
    with StoreWriter.open(job.spec, job.rows, root, overwrite=overwrite) as writer:
        resumed = writer.committed_rows > 0
        for shard, path, _ in shards:
            start, stop = shard.bounds(len(job.rows))
            with fmt.open_h5(path) as file:
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
        writer.finalize({"backbone": job.backbone.name, "layer": job.layer, "weights_source": job.weights.source,
                         "merged_from": merged_from})
        path = writer.path
    return ExtractResult(job.spec.dataset, job.model, path, "resumed" if resumed else "merged", len(job.rows),
                         written, failed, fingerprint=job.spec.fingerprint)
