"""`featurestore ls | show | verify | rm`: inspecting and removing stores."""

from __future__ import annotations

from pathlib import Path

import typer

from featurestore.cli.output import JSON_OPTION, ROOT_OPTION, emit, human_bytes, print_json, print_table, records
from featurestore.errors import RootNotWritable, StoreNotFound
from featurestore.paths import datasets_dir, existing_root, runs_dir, stores_dir
from featurestore.store import format as fmt
from featurestore.store.catalog import catalog
from featurestore.store.lock import WriterLock
from featurestore.store.reader import locate, read_arrays
from featurestore.store.verify import verify_file

LS_COLUMNS = ["dataset", "model", "rows", "failed", "dim", "dtype", "state", "size", "created", "fingerprint"]


def _no_stores(path: Path) -> str:
    """What ``ls`` says of a root without stores: a fresh one (empty, or made by ingest), or a
    directory with other things in it, more likely a mistyped --root than a featurestore root."""
    kept = [where(path) for where in (stores_dir, datasets_dir, runs_dir)]
    if any(path.iterdir()) and not any(directory.is_dir() for directory in kept):
        return (f"no stores under {path}: it is not a featurestore root (no {', '.join(d.name + '/' for d in kept)} "
                "in it); check --root or $FEATURESTORE_HOME")
    return f"no stores yet under {path}; run `featurestore extract` or `make run`"


def ls(root: str = ROOT_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List every store under the root (the catalog)."""
    frame = catalog(root)
    if as_json:
        print_json(records(frame))
        return
    frame = frame.assign(
        size=frame["bytes"].map(human_bytes),
        fingerprint=frame["fingerprint"].str.slice(0, 12),
        created=frame["created"].dt.strftime("%Y-%m-%d %H:%M"),
    )
    if frame.empty:
        typer.echo(_no_stores(existing_root(root)))
        return
    emit(frame, LS_COLUMNS, False, title="feature stores")
    for dataset, model, problem in zip(frame["dataset"], frame["model"], frame["problem"]):
        if isinstance(problem, str):  # the table gives only the state; this says why and what to run
            typer.echo(f"warning: {dataset}/{model}: {problem}", err=True)


def show(
    dataset: str = typer.Argument(..., help="Dataset name, e.g. fashion-mnist."),
    model: str = typer.Argument(..., help="Model name, e.g. efficientnet_lite0."),
    rows: int = typer.Option(5, "--rows", "-n", min=0, help="How many rows to show (0: the provenance only)."),
    root: str = ROOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a store's provenance and its first rows."""
    path = locate(dataset, model, root)
    arrays = read_arrays(path, head=rows)  # the first rows only: a store may be larger than memory
    head = [
        {"id": arrays.ids[i], "label": int(arrays.labels[i]), "class_name": arrays.class_names[arrays.labels[i]],
         "split": arrays.split[i], "fold": int(arrays.fold[i]), "failed": bool(arrays.failed[i]),
         "features": [round(float(v), 4) for v in arrays.features[i, :4]]}
        for i in range(len(arrays.ids))
    ]
    if as_json:
        print_json({"path": str(path), "provenance": arrays.provenance, "rows": head})
        return
    provenance = [{"field": k, "value": v} for k, v in arrays.provenance.items()]
    print_table(provenance, ["field", "value"], title=str(path))
    # a failed row's features are zeros, not its image's: said instead of them
    shown = [dict(row, features="failed (image unreadable)" if row["failed"] else row["features"]) for row in head]
    print_table(shown, ["id", "label", "class_name", "split", "fold", "features"], title=f"first {len(head)} rows (4 features each)")


def verify(
    dataset: str = typer.Argument(None, help="Only stores of this dataset."),
    model: str = typer.Argument(None, help="Only this model's store."),
    root: str = ROOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check stores: shapes agree, no NaN/inf, complete, fingerprint consistent. Exit 1 on any problem;
    a store being written is listed as ``writing`` and checked once its extraction ends."""
    frame = catalog(root, dataset)
    if model:
        frame = frame[frame["model"] == model]
    if frame.empty:
        raise StoreNotFound(f"no store matches dataset={dataset or '*'} model={model or '*'}; `featurestore ls` lists the stores")
    # A store being written has nothing wrong with it yet: a check run during the nightly extraction
    # said FAILED ("another process is writing this store") and exit 1. It is listed, not verified.
    writing = frame["state"].str.contains("writing")
    being_written, frame = list(frame.loc[writing, "path"]), frame[~writing]
    reports = [verify_file(Path(p)) for p in frame["path"]]
    # A stale store is intact (ok) but no longer matches its dataset, and one whose dataset's
    # manifest is damaged cannot be compared with it: said as warnings (an unreadable store's
    # problem is verify's own).
    noted = {p: [problem] for p, state, problem in zip(frame["path"], frame["state"], frame["problem"])
             if isinstance(problem, str) and (state == "complete" or state.startswith("stale"))}
    stale = set(frame.loc[frame["state"].str.startswith("stale"), "path"])
    warnings = [r.warnings + noted.get(str(r.path), []) for r in reports]
    later = "being written now; verify it once its extraction ends"
    if as_json:
        print_json([{"path": str(r.path), "ok": r.ok, "stale": str(r.path) in stale, "problems": r.problems,
                     "warnings": w} for r, w in zip(reports, warnings)]
                   + [{"path": p, "ok": None, "writing": True, "problems": [], "warnings": [later]}
                      for p in being_written])
    else:
        # stale: intact, so not a failure, but not "ok" beside the command that rebuilds it either
        print_table(
            [{"store": str(r.path), "result": "FAILED" if not r.ok else "stale" if str(r.path) in stale else "ok",
              "details": "; ".join(r.problems + w) or "-"} for r, w in zip(reports, warnings)]
            + [{"store": p, "result": "writing", "details": later} for p in being_written],
            ["store", "result", "details"], title="verify")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def _rm_targets(final, partial: bool, dataset: str, model: str) -> list:
    """The files ``rm`` deletes: the store and its ``.partial`` (only the latter with ``partial``)."""
    targets = [p for p in ([] if partial else [final]) + [fmt.partial_path(final)] if p.exists()]
    if not targets:
        what = "no unfinished extraction" if partial else "no store"
        raise StoreNotFound(f"{final}: {what} for dataset {dataset!r} and model {model!r}; `featurestore ls` lists the stores")
    for path in targets:
        if path.is_dir():
            raise fmt.directory_in_the_way(path)
    return targets


def rm(
    dataset: str = typer.Argument(..., help="Dataset name."),
    model: str = typer.Argument(..., help="Model name."),
    partial: bool = typer.Option(False, "--partial", help="Delete only the unfinished extraction (.partial), "
                                 "keeping the complete store beside it (an interrupted --overwrite)."),
    root: str = ROOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete a store (complete or interrupted). Refuses while another process writes it."""
    final = fmt.store_path(dataset, model, root)
    lock = WriterLock(fmt.lock_path(final), final)
    _rm_targets(final, partial, dataset, model)  # nothing to delete, or a directory: said without the lock
    lock.acquire(wait_seconds=0)
    try:
        # Listed again under the lock: a writer may have finished (renamed its .partial) meanwhile.
        targets = _rm_targets(final, partial, dataset, model)
        for path in targets:
            try:
                path.unlink()
            except OSError as error:
                raise RootNotWritable(
                    f"{path}: cannot delete ({error.strerror}); the featurestore root is not writable by this "
                    f"user: make {path.parent} writable or run as its owner"
                ) from None
    finally:
        lock.release()
    if as_json:
        print_json({"removed": [str(p) for p in targets]})
    else:
        for path in targets:
            typer.echo(f"removed {path}")


def register(app: typer.Typer) -> None:
    """Add the store commands to the CLI."""
    app.command("ls")(ls)
    app.command("show")(show)
    app.command("verify")(verify)
    app.command("rm")(rm)
