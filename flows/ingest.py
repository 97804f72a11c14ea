"""The ``ingest`` flow: fetch a dataset once, prove it intact, split it reproducibly.

Run it as ``featurestore ingest fashion-mnist [--root DIR] ...`` (``python -m flows.ingest``
takes the same arguments).
"""

from __future__ import annotations

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from featurestore.datasets.folders import skipped_note
from featurestore.ingest.lock import ingesting
from featurestore.ingest.request import check_request
from featurestore.ingest.split import DEFAULT_FOLDS, DEFAULT_RATIOS
from featurestore.paths import check_root, dataset_dir
from featurestore.store.catalog import stale_models, stale_shards
from flows.artifacts import artifact_key, name_part
from tasks import ingest as steps


def _summary(result: dict) -> str:
    lines = [
        f"# Ingest of `{result['dataset']}`",
        "",
        f"* images: {result['images']} in {result['classes']} classes",
        f"* manifest: `{result['manifest']}`",
        f"* manifest sha256: `{result['manifest_hash']}`",
        f"* quarantined: {result['quarantined']} (`{result['quarantine']}`)",
    ]
    if result["empty_classes"]:
        lines.append(f"* classes dropped, no readable image: {', '.join(result['empty_classes'])}")
    if result["stale_stores"]:
        lines.append(f"* stores now stale (built from the earlier manifest): {', '.join(result['stale_stores'])}")
    if result["stale_shards"]:
        lines.append(f"* shards now stale (built from the earlier manifest): {', '.join(result['stale_shards'])}")
    if result["copies_across"]:
        lines.append(f"* byte-identical copies across splits or classes: {result['copies_across']} images")
    if result["skipped"]:
        lines.append(f"* not read: {skipped_note(result['skipped'], result['skipped_files'])}")
    if result["quarantined"]:
        quarantine = pd.read_csv(result["quarantine"], dtype=str, keep_default_na=False).head(50)
        lines += ["", "| file | class | reason |", "|---|---|---|"]
        lines += [f"| {r.source} | {r.class_name} | {r.reason} |" for r in quarantine.itertuples()]
    return "\n".join(lines)


@flow(name="ingest", log_prints=True)
def ingest(dataset: str, root: str | None = None, ratios: list[float] = list(DEFAULT_RATIOS), seed: int = 0,
           limit_per_class: int | None = None, mirror: str | None = None, source: str | None = None,
           name: str | None = None, folds: int = DEFAULT_FOLDS, checksums: dict[str, str] | None = None) -> dict:
    """Ingest ``dataset`` under ``root``; return the summary (manifest path and hash, counts).

    ``ratios`` (train, val, test) and ``seed`` apply where no official split is published;
    ``limit_per_class`` takes a reproducible subset; ``mirror`` replaces the download base URL;
    ``source`` and ``name`` are for ``imagefolder``; ``checksums`` replaces pinned checksums by file
    name (for a mirror that serves other bytes).
    """
    stored_as = check_request(dataset, name=name, source=source, ratios=ratios, limit_per_class=limit_per_class,
                              folds=folds)
    check_root(root)
    with ingesting(dataset_dir(stored_as, root)):
        files = steps.fetch_files(dataset, root, source, mirror, checksums, name)
        candidates = steps.prepare(dataset, files, root, name)
        verified = steps.verify(candidates, seed, limit_per_class)
        result = steps.build_manifest(dataset, verified, list(ratios), seed, folds, limit_per_class, source)
    result["stale_stores"] = stale_models(result["dataset"], root)
    shards = stale_shards(result["dataset"], root)
    result["stale_shards"] = list(shards)
    key = artifact_key("ingest", name_part(result["dataset"]))
    create_markdown_artifact(markdown=_summary(result), key=key, description=f"Ingest of {result['dataset']}")
    print(f"{result['dataset']}: {result['images']} images, {result['quarantined']} quarantined, "
          f"manifest {result['manifest_hash'][:12]}")
    if result["empty_classes"]:
        get_run_logger().warning("%s: dropped the classes with no readable image: %s", result["dataset"],
                                 ", ".join(result["empty_classes"]))
    if result["stale_stores"]:
        get_run_logger().warning(
            # Said in `featurestore run` too, whose extract step then rebuilds those of its backbones.
            "%s: the stores of %s were built from the earlier manifest and are now stale; `featurestore run` "
            "rebuilds those of the backbones it runs, and `featurestore verify %s` gives the command that rebuilds "
            "each (with the same layer and weights)", result["dataset"],
            ", ".join(result["stale_stores"]), result["dataset"])
    for shard, reason in shards.items():
        get_run_logger().warning("%s: shard %s is stale, %s before merging", result["dataset"], shard, reason)
    if result["skipped"]:
        # Logged by the flow, not the CLI: a deployment run's logs must say it too.
        get_run_logger().warning("%s: %s", result["dataset"], skipped_note(result["skipped"], result["skipped_files"]))
    if result["copies_across"]:
        get_run_logger().warning("%s: %d images are byte-identical copies of one in another split or class "
                                 "(same sha256 in manifest.csv): test copies of training images inflate accuracy; "
                                 "remove the copies and ingest again", result["dataset"], result["copies_across"])
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.ingest DATASET [OPTIONS]`` is ``featurestore ingest DATASET [OPTIONS]``."""
    from featurestore.cli import run_command

    run_command("ingest", argv, module="flows.ingest")


if __name__ == "__main__":
    main()
