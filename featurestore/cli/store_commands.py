"""`featurestore ls | show | verify | rm`: inspecting and removing stores."""

from __future__ import annotations

from pathlib import Path

import typer

from featurestore.cli.output import JSON_OPTION, ROOT_OPTION, emit, human_bytes, print_json, print_table, records
from featurestore.errors import InvalidOption, counted
from featurestore.paths import datasets_dir, existing_root, runs_dir, stores_dir
from featurestore.store.catalog import catalog
from featurestore.store.reader import locate, read_arrays
from featurestore.store.remove import remove_store
from featurestore.store.verify import StoreCheck, verify_stores

#: -d/--dataset and -m/--model, as extract, evaluate and report take them, beside the DATASET MODEL arguments
DATASET_OPTION = typer.Option(None, "--dataset", "-d", help="The dataset, as the DATASET argument names it.")
MODEL_OPTION = typer.Option(None, "--model", "-m", help="The model, as the MODEL argument names it.")

LS_COLUMNS = ["dataset", "model", "rows", "failed", "dim", "dtype", "state", "size", "created", "fingerprint"]
VERIFY_SHOWN = {"failed": "FAILED"}  # a verify result as its table shows it, where that differs


def _no_stores(path: Path) -> str:
    """What ``ls`` says of a root without stores: a fresh one (empty, or made by ingest), or a
    directory with other things in it, more likely a mistyped --root than a featurestore root."""
    kept = [where(path) for where in (stores_dir, datasets_dir, runs_dir)]
    if any(path.iterdir()) and not any(directory.is_dir() for directory in kept):
        return (f"no stores under {path}: it is not a featurestore root (no {', '.join(d.name + '/' for d in kept)} "
                "in it); check --root or $FEATURESTORE_HOME")
    return f"no stores yet under {path}; run `featurestore extract` or `make run`"


def store_names(command: str, arguments: tuple[str | None, str | None], dataset: str | None, model: str | None,
                *, required: bool) -> tuple[str | None, str | None]:
    """The (dataset, model) that ``featurestore <command>`` was given: as its DATASET MODEL
    ``arguments``, with -d/--dataset and -m/--model, or both ways, the arguments then naming in
    order what the options leave (``show -d pics efficientnet_lite0``). ``required``: both must be
    named. ``InvalidOption`` for a name too many or one missing."""
    named = {"dataset": dataset, "model": model}
    left = [slot for slot, name in named.items() if name is None]
    given = [name for name in arguments if name is not None]
    if len(given) > len(left):
        options = " ".join(f"--{slot} {name}" for slot, name in named.items() if name is not None)
        raise InvalidOption(f"{' '.join(given)} given beside {options}: name the dataset and the model once each; "
                            f"see `featurestore {command} --help`")
    named.update(zip(left, given))
    missing = [slot for slot, name in named.items() if name is None]
    if required and missing:
        raise InvalidOption(f"no {missing[0]} given: name it as the {missing[0].upper()} argument or with "
                            f"--{missing[0]}; see `featurestore {command} --help`")
    return named["dataset"], named["model"]


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
    dataset: str = typer.Argument(None, help="Dataset name, e.g. fashion-mnist (or -d).", show_default=False),
    model: str = typer.Argument(None, help="Model name, e.g. efficientnet_lite0 (or -m).", show_default=False),
    dataset_option: str = DATASET_OPTION,
    model_option: str = MODEL_OPTION,
    rows: int = typer.Option(5, "--rows", "-n", min=0, help="How many rows to show (0: the provenance only)."),
    root: str = ROOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a store's provenance and its first rows."""
    dataset, model = store_names("show", (dataset, model), dataset_option, model_option, required=True)
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
    print_table(shown, ["id", "label", "class_name", "split", "fold", "features"],
                title=f"first {counted(len(head), 'row')} (4 features each)")


def verify(
    dataset: str = typer.Argument(None, help="Only stores of this dataset (or -d)."),
    model: str = typer.Argument(None, help="Only this model's store (or -m)."),
    dataset_option: str = DATASET_OPTION,
    model_option: str = MODEL_OPTION,
    root: str = ROOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check stores: shapes agree, no NaN/inf, complete, fingerprint consistent; exit 1 on any problem.

    A store being written is listed as "writing" and checked once its extraction ends."""
    # typer shows this docstring as the help, without markup: its first paragraph in the command list,
    # and later ones with their line breaks kept (so each is one line)
    dataset, model = store_names("verify", (dataset, model), dataset_option, model_option, required=False)
    checks = verify_stores(root, dataset, model)
    if as_json:
        print_json([_verify_json(check) for check in checks])
    else:
        # stale: intact, so not a failure, but not "ok" beside the command that rebuilds it either
        print_table([{"store": str(c.path), "result": VERIFY_SHOWN.get(c.result, c.result),
                      "details": "; ".join(c.problems + c.warnings) or "-"} for c in checks],
                    ["store", "result", "details"], title="verify")
    if any(check.result == "failed" for check in checks):
        raise typer.Exit(1)


def _verify_json(check: StoreCheck) -> dict:
    """One store's entry in ``verify --json``: a store being written has ``writing`` and no ``stale``."""
    if check.result == "writing":
        return {"path": str(check.path), "ok": None, "writing": True, "problems": [], "warnings": check.warnings}
    return {"path": str(check.path), "ok": check.ok, "stale": check.stale, "problems": check.problems,
            "warnings": check.warnings}


def rm(
    dataset: str = typer.Argument(None, help="Dataset name (or -d).", show_default=False),
    model: str = typer.Argument(None, help="Model name (or -m).", show_default=False),
    dataset_option: str = DATASET_OPTION,
    model_option: str = MODEL_OPTION,
    partial: bool = typer.Option(False, "--partial", help="Delete only the unfinished extraction (.partial), "
                                 "keeping the complete store beside it (an interrupted --overwrite)."),
    root: str = ROOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete a store (complete or interrupted). Refuses while another process writes it."""
    dataset, model = store_names("rm", (dataset, model), dataset_option, model_option, required=True)
    removed = remove_store(dataset, model, root, partial=partial)
    if as_json:
        print_json({"removed": [str(p) for p in removed]})
    else:
        for path in removed:
            typer.echo(f"removed {path}")


def register(app: typer.Typer) -> None:
    """Add the store commands to the CLI."""
    app.command("ls")(ls)
    app.command("show")(show)
    app.command("verify")(verify)
    app.command("rm")(rm)
