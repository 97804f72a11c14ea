"""Writing one evaluation run: report.md, results.csv, results.json (+ schema) and the pictures."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from featurestore.evaluation.plots import accuracy_figure, confusion_figure
from featurestore.evaluation.runs import report_path, results_path
from featurestore.evaluation.schema import RESULTS_SCHEMA, SCHEMA_VERSION, validate_results
from featurestore.evaluation.summary import LEAKY_SUFFIX, add_gains, best_record, summaries
from featurestore.files import write_text_aside

TABLE_COLUMNS = [
    "dataset", "model", "classifier", "kind", "leak_free", "accuracy", "top5_accuracy", "macro_f1",
    "gain_over_best_single", "best_single", "no_gain_reason", "fit_seconds", "predict_seconds", "params",
    "selection",
]


def selection_text(record: dict[str, Any]) -> str:
    """How the record's hyper-parameters were chosen, e.g. ``"subsample: fit 15000, scored 10000"``;
    empty for answers without a selection (ensembles)."""
    selection = record.get("selection")
    if not selection:
        return ""
    # runs written before the sizes were recorded have no "fit_rows"
    if "fit_rows" not in selection or selection["method"] == "default":
        return selection["method"]
    return f"{selection['method']}: fit {selection['fit_rows']}, scored {selection['score_rows']}"


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results table: one flat row per record, best first within each dataset."""
    rows = []
    for r in records:
        row = {column: r.get(column) for column in TABLE_COLUMNS}
        row["params"] = json.dumps(r.get("params"), sort_keys=True)
        row["selection"] = selection_text(r)
        rows.append(row)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    return sorted(rows, key=lambda row: (datasets.index(row["dataset"]), -row["accuracy"]))


def _percent(value: float | None) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * value:.2f}"


def gain_text(row: dict[str, Any]) -> str:
    """A table row's gain cell: the gain in points, why an ensemble has none, or empty (a single
    answer; an ensemble of a run written before records carried ``no_gain_reason``)."""
    if row["gain_over_best_single"] is not None:
        return f"{row['gain_over_best_single']:+.2f}"
    return f"none: {row['no_gain_reason']}" if row["no_gain_reason"] else ""


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    header = ("| model | classifier | accuracy % | top-5 % | macro-F1 % | gain (points) | fit s | predict s "
              "| params | chosen on |")
    lines = [header, "|" + "---|" * 10]
    for row in rows:
        name = row["classifier"] + ("" if row["leak_free"] else LEAKY_SUFFIX)
        gain = gain_text(row)
        lines.append(
            f"| {row['model']} | {name} | {_percent(row['accuracy'])} | {_percent(row['top5_accuracy'])} "
            f"| {_percent(row['macro_f1'])} | {gain} | {row['fit_seconds']:.2f} | {row['predict_seconds']:.2f} "
            f"| `{row['params']}` | {row['selection']} |"
        )
    return "\n".join(lines)


def markdown_summary(document: dict[str, Any]) -> str:
    """Summary lines and the results table of every dataset, in Markdown."""
    rows = table_rows(document["results"])
    parts = []
    for dataset, line in document["summary"].items():
        table = _markdown_table([r for r in rows if r["dataset"] == dataset])
        parts += [f"## {dataset}", "", f"**{line}**", "", table, ""]
    if document["skipped"]:
        parts += ["## Skipped", ""]
        parts += [f"- {s['dataset']} / {s['model']}{' / ' + s['classifier'] if s.get('classifier') else ''}: {s['reason']}"
                  for s in document["skipped"]]
    return "\n".join(parts).rstrip() + "\n"


def run_parameters_line(document: dict[str, Any], dataset: str | None = None) -> str:
    """What kind of run ``document`` is, in one line: train rows per class, classifiers, models
    (those its results of ``dataset``, or of every dataset, came from), stacking and seed, e.g.
    ``"train_per_class=10 (at most 10 train+val images per class); classifiers=logreg,knn; ..."``.

    The Prefect artifacts carry it: their history mixes every run of a dataset, and a
    learning-curve point or a subset of classifiers or models would read as a change in accuracy.
    """
    parameters = document["parameters"]
    per_class = parameters.get("train_per_class")
    fit = (f"train_per_class={per_class} (at most {per_class} train+val images per class)" if per_class
           else "train_per_class=all")
    singles = [r for r in document["results"] if r["kind"] == "single" and dataset in (None, r["dataset"])]
    models = sorted({r["model"] for r in singles}) or parameters.get("models") or ["every store"]
    # results.json's schema leaves "parameters" open: report.md of a document written by hand (or
    # by the library without the flow) names what its results show rather than fail
    classifiers = parameters.get("classifiers") or list(dict.fromkeys(r["classifier"] for r in singles))
    return "; ".join([
        fit, f"classifiers={','.join(classifiers)}", f"models={','.join(models)}",
        f"stacking={'yes' if parameters.get('stacking') else 'no'}", f"seed={parameters.get('seed', 0)}",
    ])


def _report_markdown(document: dict[str, Any], heat_map: str, confusions: dict[str, str]) -> str:
    """report.md: ``heat_map`` is the accuracy picture's file name, ``confusions`` maps each dataset to
    its confusion picture's (kept apart: a dataset may be named like the heat map)."""
    # the artifacts' wording: the models actually used, not the request (None for "every store")
    head = [f"# Evaluation run {document['run_id']}", "",
            f"Created {document['created_at']}; {run_parameters_line(document)}.", "",
            "Leak-free answers only count for 'best'; stacking_cv's meta-classifier is fit on out-of-fold "
            "probabilities.", ""]
    images = ["## Pictures", "", f"![accuracy]({heat_map})", ""]
    images += [f"![confusion matrix {d}]({name})" for d, name in confusions.items()]
    return "\n".join(head) + markdown_summary(document) + "\n" + "\n".join(images) + "\n"


def _confusion_pictures(run_dir: Path, records: list[dict[str, Any]], datasets: Iterable[str]) -> dict[str, str]:
    """Draw the confusion matrix of each dataset's best leak-free answer; return dataset -> file name."""
    pictures = {}
    for dataset in datasets:
        best = best_record([r for r in records if r["dataset"] == dataset])
        if best is not None:
            pictures[dataset] = confusion_figure(best, run_dir / f"confusion_{dataset}.png").name
    return pictures


def write_report(
    run_dir: Path,
    records: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """Write every report file of a run into ``run_dir`` and return the ``results.json`` document.

    ``results.json`` is written last: its presence marks a finished run.
    """
    run_dir = Path(run_dir)
    records = add_gains([dict(r) for r in records])
    document = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_dir.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": parameters,
        "summary": summaries(records),
        "results": records,
        "skipped": skipped,
    }
    validate_results(document)
    pd.DataFrame(table_rows(records), columns=TABLE_COLUMNS).to_csv(run_dir / "results.csv", index=False)
    if records:
        heat_map = accuracy_figure(records, run_dir / "accuracy.png", parameters.get("train_per_class")).name
        markdown = _report_markdown(document, heat_map, _confusion_pictures(run_dir, records, document["summary"]))
    else:
        markdown = markdown_summary(document)
    write_text_aside(report_path(run_dir), markdown)
    write_text_aside(run_dir / "results.schema.json", json.dumps(RESULTS_SCHEMA, indent=2))
    write_text_aside(results_path(run_dir), json.dumps(document, indent=2))
    return document
