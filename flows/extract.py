"""The ``extract`` flow: each backbone over each dataset once, into its store.

Run it as ``python -m flows.extract --dataset fashion-mnist --models efficientnet_lite0,efficientnet_lite1``.
The flow plans first (fingerprints only: complete stores are skipped without loading a model),
then fans out one task per (dataset, shard) with every pending model sharing the decoding, or
one per (dataset, model, shard) with ``share_decode=False`` (models on separate devices or
hosts). With ``shards > 1`` each shard is its own task and a merge task per model joins them.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from featurestore.backbones import register_onnx_spec
from featurestore.errors import InvalidOption
from featurestore.extract import check_request
from featurestore.extract.plan import check_weights
from featurestore.paths import check_root
from flows.api import shared_api
from flows.artifacts import artifact_key, name_part
from flows.params import check_given
from flows.runners import runner_checked_once, tasks_run_on
from flows.stopping import ctrl_c_stops_tasks
from tasks import extract as steps


@flow(name="extract", log_prints=True)
def extract(datasets: list[str], models: list[str], root: str | None = None, device: str = "auto",
            runtime: str | None = None, precision: str | None = None, batch_size: int | None = None,
            weights: dict[str, str] | None = None, layer: str | None = None, shards: int = 1,
            shard_index: int | None = None, share_decode: bool = True,
            onnx_specs: list[str] | None = None, overwrite: bool = False, replace_stale: bool = False,
            task_runner: str = "threads", workers: int = 1) -> list[dict]:
    """Extract every model over every dataset; return one summary per (dataset, model) store.

    ``weights`` maps a model to a weights file; ``onnx_specs`` are JSON files registering ONNX
    backbones; ``shards`` splits each dataset's rows into that many tasks, merged at the end.
    ``shard_index`` runs only that shard (one run per host or GPU); the run that finds every
    shard complete does the merge, the others report ``shard-done``. ``overwrite`` replaces complete
    stores built from other inputs (each once its new one is complete); ``replace_stale`` only those
    built from an earlier manifest of their dataset (ingested again since). The tasks run on
    ``task_runner`` (threads, processes, dask), ``workers`` at once (default 1: one device).
    """
    check_given("datasets", datasets, "dataset", "--dataset")
    check_given("models", models, "model", "--models")
    _check_shards(shards, shard_index)
    # Resolved here, where they were typed: a Dask worker elsewhere read a relative path from its own
    # directory, and wrote into another root of that name if there was one.
    root = str(check_root(root, create=False))
    weights = {model: str(Path(file).resolve()) for model, file in (weights or {}).items()} or None
    onnx_specs = [str(Path(spec).resolve()) for spec in onnx_specs or []] or None
    # Checked here, not only in the tasks: a plan that finds every store complete runs no task.
    for spec in onnx_specs or []:
        register_onnx_spec(spec)
    check_request(models, device=device, runtime=runtime, precision=precision, batch_size=batch_size)
    check_weights(weights or {}, models)
    with tasks_run_on(task_runner, workers):
        plans = {d: steps.pending_models.submit(d, models, root, weights, layer, onnx_specs, overwrite, replace_stale,
                                                precision) for d in datasets}
        runs, merges, skipped = [], [], []
        for dataset, planned in plans.items():
            pending = planned.result()
            skipped += [{"dataset": dataset, "model": m, "status": "skipped"} for m in models if m not in pending]
            groups = [pending] if share_decode else [[m] for m in pending]
            for group in (g for g in groups if g):
                for index in (range(shards) if shard_index is None else [shard_index]):
                    runs.append((dataset, group, steps.extract_stores.submit(
                        dataset, group, root, device, runtime, precision, batch_size, weights, layer,
                        index, shards, onnx_specs, overwrite, replace_stale)))
        summaries = [s for _, _, future in runs for s in future.result()]
        if shards > 1:
            firsts = runs[::shards] if shard_index is None else runs
            for dataset, group, _ in firsts:
                merges += [steps.merge_shards.submit(dataset, m, shards, root, weights, layer, onnx_specs,
                                                     if_ready=shard_index is not None, overwrite=overwrite,
                                                     replace_stale=replace_stale) for m in group]
            own = {(s["dataset"], s["model"]): s for s in summaries}
            summaries = [_merge_row(future.result(), own, shards, shard_index) for future in merges]
    rows = summaries + skipped
    key = artifact_key("extract", *map(name_part, datasets))
    create_table_artifact(table=rows, key=key, description="Stores written or reused by the extract flow")
    for row in rows:
        print(summary_line(row))
    return rows


def _merge_row(merged: dict, own: dict[tuple[str, str], dict], shards: int, shard_index: int | None) -> dict:
    """A merge task's summary with the shard count; for a shard run that leaves the merge to another
    run, with what this run's shard extraction wrote (``own``, by dataset and model)."""
    row = {**merged, "shards": shards}
    if row["status"] == "shard-done":
        extracted = own[row["dataset"], row["model"]]
        row.update({key: extracted[key] for key in ("written", "failed", "seconds", "images_per_second", "runtime")},
                   shard=f"{shard_index}/{shards}")
    return row


def summary_line(row: dict) -> str:
    """``dataset/model: status``, then what was written and, for a shard, what its merge waits for.
    A merge runs no model, so it has no images per second (it printed 0.0)."""
    line = f"{row['dataset']}/{row['model']}: {row['status']}"
    if row["status"] == "shard-done":
        wrote = f"wrote {row['written']} rows" if row["written"] else "was complete"
        if row["images_per_second"]:
            wrote += f" at {row['images_per_second']} img/s"
        missing = row["waiting_for"]
        waiting = (f"waiting for shard{'s' * (len(missing) > 1)} {', '.join(missing)}; the run that completes "
                   "the set merges the store" if missing else "another run is merging the store")
        return f"{line}, shard {row['shard']} {wrote}; {waiting}"
    if row.get("written"):
        line += f", {row['written']} rows"
        line += f" from {row['shards']} shards" if "shards" in row else f" at {row['images_per_second']} img/s"
    return line


def _check_shards(shards: int, shard_index: int | None) -> None:
    """One line for a shard count below 1 (it extracted nothing and reported success) or an index
    outside it (accepted when the store was complete), in the flow's own parameter names."""
    if not isinstance(shards, int) or shards < 1:
        raise InvalidOption(f"shards={shards!r}: split the rows into 1 or more shards (--shards N, -p shards=N)")
    if shard_index is not None and not 0 <= shard_index < shards:
        raise InvalidOption(f"shard_index={shard_index!r}: with shards={shards} it is one of 0..{shards - 1} "
                            "(--shard-index I, -p shard_index=I)")


def run_extract(task_runner: str = "threads", workers: int = 1, **parameters) -> list[dict]:
    """Run the flow with the task runner called ``task_runner`` and one Prefect API for its workers;
    Ctrl-C stops its tasks after their current batch (see ``ctrl_c_stops_tasks``)."""
    # A bad runner, worker count or shard fails before the API starts.
    with runner_checked_once(task_runner, workers):
        _check_shards(parameters.get("shards", 1), parameters.get("shard_index"))
        with shared_api(), ctrl_c_stops_tasks():
            return extract(task_runner=task_runner, workers=workers, **parameters)


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.extract --dataset NAME --models A,B ...`` is ``featurestore extract-flow``: one set of
    options for both; it prints the rows as JSON and exits 130 on Ctrl-C (the stores already said how far
    they got and how to resume; Prefect logged the crash)."""
    from featurestore.cli import run_command

    run_command("extract-flow", argv, module="flows.extract")


if __name__ == "__main__":
    main()
