"""`featurestore evaluate | report`: run the evaluate flow, read its reports and their history."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from featurestore.cli.output import JSON_OPTION, ROOT_OPTION, console, print_json, print_table, records, split_names
from featurestore.cli.prefect_api import check_prefect_api
from featurestore.errors import InvalidOption

REPORT_COLUMNS = ["model", "classifier", "accuracy %", "top-5 %", "macro-F1 %", "gain", "fit s", "params"]


def _percent(value) -> str | None:
    return None if value is None else f"{100 * value:.2f}"


def print_run(document: dict, as_json: bool, root: str | None = None, dataset: str | None = None) -> None:
    """The run's results table per dataset (only ``dataset``'s, if given), headed by its summary
    line, then where its report is; with ``as_json``, the run's whole ``results.json`` document
    (parameters, counts, fingerprints)."""
    from featurestore.evaluation.report import gain_text, table_rows  # scikit-learn loads only when needed
    from featurestore.evaluation.runs import report_path, run_path
    from featurestore.evaluation.summary import LEAKY_SUFFIX

    if as_json:
        print_json(document)
        return
    rows = table_rows(document["results"])
    for name, line in document["summary"].items():
        if dataset not in (None, name):
            continue
        shown = [
            {"model": r["model"],
             "classifier": r["classifier"] + ("" if r["leak_free"] else LEAKY_SUFFIX),
             "accuracy %": _percent(r["accuracy"]), "top-5 %": _percent(r["top5_accuracy"]),
             "macro-F1 %": _percent(r["macro_f1"]),
             "gain": gain_text(r) or None,
             "fit s": f"{r['fit_seconds']:.1f}", "params": r["params"]}
            for r in rows if r["dataset"] == name
        ]
        print_table(shown, REPORT_COLUMNS, title=f"{name} (run {document['run_id']})")
        console.print(f"[bold]{name}: {line}[/bold]")
    for name in uncapped_datasets(document):
        if dataset in (None, name):
            cap = document["parameters"]["train_per_class"]
            console.print(f"note: {name}: --train-per-class {cap} capped no class (none has more usable train+val "
                          "images): a full fit, filed under train_per_class 'all' in `featurestore report --history`")
    for entry in (e for e in document["skipped"] if dataset in (None, e["dataset"])):
        what = f"{entry['classifier']} on " if entry.get("classifier") else ""
        console.print(f"skipped {what}{entry['dataset']}/{entry['model']}: {entry['reason']}")
    console.print(f"report: {report_path(run_path(document['run_id'], root))}", soft_wrap=True)


def uncapped_datasets(document: dict) -> list[str]:
    """Datasets of a ``--train-per-class`` run whose results were full fits: no class had more usable
    train+val rows than the cap (each record's ``train_per_class`` is null; runs from before records
    carried it are not named)."""
    from featurestore.evaluation.history import fitted_per_class

    parameters = document["parameters"]
    if not parameters.get("train_per_class"):
        return []
    full = {}
    for record in document["results"]:
        full[record["dataset"]] = full.get(record["dataset"], True) and fitted_per_class(parameters, record) is None
    return [name for name, uncapped in full.items() if uncapped]


@contextmanager
def damaged_runs_said() -> Iterator[None]:
    """Each run skipped for a damaged results.json, said once on stderr as ``warning: <one line>``
    (Python's warning format takes two lines and names featurestore's source); other warnings pass."""
    from featurestore.evaluation.history import DamagedRunWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedRunWarning)
        try:
            yield
        finally:
            said = set()
            for warning in caught:
                if not issubclass(warning.category, DamagedRunWarning):
                    warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
                elif str(warning.message) not in said:
                    said.add(str(warning.message))
                    typer.echo(f"warning: {warning.message}", err=True)


def report(
    run: str = typer.Option(None, "--run", help="Run id to show (default: the latest finished run)."),
    history: bool = typer.Option(False, "--history", help="Accuracy per (dataset, model, classifier) across runs."),
    dataset: str = typer.Option(None, "--dataset", "-d",
                                help="Only this dataset: its latest run (or --run's results for it), "
                                     "or its --history rows."),
    root: str = ROOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the latest evaluation run's results table (of --dataset, if given), or the accuracy history across runs."""
    from featurestore.evaluation.history import FULL_FIT_LABEL, HISTORY_KEYS, history_table, load_run
    from featurestore.evaluation.runs import run_started

    if history and run is not None:
        raise InvalidOption(f"--run {run} and --history cannot be combined: --history shows every finished run; "
                            "leave out --history to see that run, or --run to see the history")
    with damaged_runs_said():
        if not history:
            print_run(load_run(run, root, dataset), as_json, root, dataset)
            return
        table = history_table(root, dataset)
    flat = table.reset_index()
    flat.columns = [str(c) for c in flat.columns]
    if as_json:
        # as results.json has it: an int, null for a full fit (the table's "all"); set per row, as a
        # column of ints and None would turn into floats (20.0)
        rows = records(flat)
        for row in rows:
            row["train_per_class"] = None if row["train_per_class"] == FULL_FIT_LABEL else int(row["train_per_class"])
        print_json(rows)
        return
    # Runs are columns, named by their start (to the second) to leave room for the names before
    # them, and only the latest that fit the terminal: cut columns helped no one.
    started = {run: run_started(run) for run in table.columns}
    labels = {run: f"{time:%m-%d %H:%M:%S}" if time else run for run, time in started.items()}
    if len(set(labels.values())) < len(labels):
        labels = {run: run for run in table.columns}
    keys = sum(max(len(key), int(flat[key].astype(str).str.len().max())) + 3 for key in HISTORY_KEYS)
    width = max(len(label) for label in labels.values()) + 3
    shown = list(labels.values())[-max(1, (console.width - keys) // width):]
    flat = flat.rename(columns=labels)
    print_table(records(flat[flat[shown].notna().any(axis=1)]), [*HISTORY_KEYS, *shown],
                title=f"test accuracy (%), the latest {len(shown)} of {len(labels)} runs, oldest first "
                      "(columns: run start, UTC; --json for every run and its id)")


def evaluate(
    dataset: list[str] = typer.Option(..., "--dataset", "--datasets", "-d",
                                      help="Datasets to evaluate, comma-separated or repeated."),
    model: list[str] = typer.Option(None, "--model", "--models", "-m",
                                    help="Models, comma-separated or repeated (default: every store of the dataset)."),
    classifier: list[str] = typer.Option(None, "--classifier", "--classifiers", "-c",
                                         help="Classifiers, comma-separated or repeated (default: all registered)."),
    stacking: bool = typer.Option(True, "--stacking/--no-stacking", help="Add stacking, soft vote and early fusion."),
    in_sample: bool = typer.Option(False, "--in-sample", help="Also show the leaky in-sample stacking, labelled."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice (same seed, same numbers)."),
    task_runner: str = typer.Option("threads", "--task-runner", help="threads, processes or dask."),
    workers: int = typer.Option(2, "--workers", help="Tasks run at once."),
    train_per_class: int = typer.Option(None, "--train-per-class",
                                        help="Fit on at most this many train+val images per class (seeded; hyper-parameters chosen within them); test stays whole. 0 or none for every image, as ingest's --limit-per-class takes it."),
    root: str = ROOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the evaluate flow and print its results table."""
    from featurestore.evaluation.history import load_run
    from featurestore.evaluation.readiness import check_some_store_usable, check_usable_test_rows, requested_models
    from featurestore.evaluation.request import check_request
    from flows.evaluate import run_evaluate  # Prefect loads only when a flow actually runs

    datasets, models = split_names(dataset, "--dataset"), split_names(model, "--models")
    classifiers = split_names(classifier, "--classifiers")
    # An unknown name is reported before a flow run starts, without Prefect's failure log.
    check_request(classifiers, train_per_class)
    requested = {name: requested_models(name, models, root) for name in datasets}
    check_some_store_usable(requested, root)
    for name, names in requested.items():
        check_usable_test_rows(name, names, root)
    check_prefect_api()
    run_dir = run_evaluate(task_runner=task_runner, workers=workers, datasets=datasets,
                           models=models or None, classifiers=classifiers or None,
                           stacking=stacking, in_sample=in_sample, seed=seed, root=root,
                           train_per_class=train_per_class)
    with damaged_runs_said():
        print_run(load_run(Path(run_dir).name, root), as_json, root)


def register(app: typer.Typer) -> None:
    """Add the evaluate and report commands to the CLI."""
    app.command("evaluate")(evaluate)
    app.command("report")(report)
