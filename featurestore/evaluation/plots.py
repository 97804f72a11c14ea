"""Report pictures. Uses matplotlib's object API (no pyplot), so it is safe in worker threads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import ConfusionMatrixDisplay

from featurestore.evaluation.history import fitted_per_class
from featurestore.evaluation.summary import LEAKY_SUFFIX, best_record, decimal_text, display_name

ENSEMBLE_ROW = "ensemble"


@dataclass
class HeatMap:
    """What one dataset's panel of ``accuracy.png`` shows, decided before anything is drawn."""

    dataset: str
    title: str
    #: backbones, then the ensemble row
    rows: list[str]
    #: tick labels: classifiers, then ensemble methods; a leaky one says so
    columns: list[str]
    #: test accuracy in %, NaN where a (row, column) has no answer
    values: np.ndarray
    #: the text printed in each cell with an answer, rounded as the summary line rounds
    labels: dict[tuple[int, int], str]
    #: cells printed in bold: the one answer the summary line names (``best_record``; of tied
    #: answers the first, as there); never a leaky one
    bold: np.ndarray


def heat_map(records: list[dict[str, Any]], train_per_class: int | None = None) -> HeatMap:
    """One dataset's panel: rows are backbones then one ensemble row, columns classifiers then
    ensemble methods. Only the answer the summary line names is bold, ties or not: it is taken over
    leak-free answers only (the in-sample stacking's meta-classifier saw its own training rows'
    answers), and the leaky
    column is labelled as the report tables label it. ``train_per_class`` is the run's parameter:
    a learning-curve run's title says how many train+val images per class it was fitted on."""
    dataset = records[0]["dataset"]
    singles = [r for r in records if r["kind"] == "single"]
    ensembles = [r for r in records if r["kind"] == "ensemble"]
    rows = list(dict.fromkeys(r["model"] for r in singles)) + ([ENSEMBLE_ROW] if ensembles else [])
    names = list(dict.fromkeys(r["classifier"] for r in singles)) + list(
        dict.fromkeys(r["classifier"] for r in ensembles)
    )
    values = np.full((len(rows), len(names)), np.nan)
    labels = {}
    bold = np.zeros(values.shape, bool)
    best = best_record(records)
    leaky = set()
    for r in records:
        cell = rows.index(ENSEMBLE_ROW if r["kind"] == "ensemble" else r["model"]), names.index(r["classifier"])
        values[cell] = 100 * r["accuracy"]
        labels[cell] = decimal_text(r["accuracy"], 1, scale=2)
        bold[cell] = r is best
        if not r["leak_free"]:
            leaky.add(r["classifier"])
    columns = [name + ("\n" + LEAKY_SUFFIX.strip() if name in leaky else "") for name in names]
    caps = {fitted_per_class({"train_per_class": train_per_class}, r) for r in records}
    title = f"{dataset}: test accuracy (%)"
    if caps != {None}:
        title += f", fit on at most {', '.join(str(c) for c in sorted(c for c in caps if c))} train+val images per class"
    if any(r.get("no_gain_reason") for r in records):
        title += "\nsingles scored on other test rows than ensembles (images failed in some stores)"
    return HeatMap(dataset, title, rows, columns, values, labels, bold)


def heat_maps(records: list[dict[str, Any]], train_per_class: int | None = None) -> list[HeatMap]:
    """``heat_map`` of every dataset of ``records``, in order of first appearance."""
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    return [heat_map([r for r in records if r["dataset"] == d], train_per_class) for d in datasets]


def accuracy_figure(records: list[dict[str, Any]], path: Path, train_per_class: int | None = None) -> Path:
    """Heat map of test accuracy, one panel per dataset (see ``heat_map``): backbones x classifiers,
    ensembles framed in red, the answer the summary line names in bold."""
    panels = heat_maps(records, train_per_class)
    height = sum(1.2 + 0.45 * len(panel.rows) for panel in panels)
    width = max(6.0, 1.3 * max((len(panel.columns) for panel in panels), default=1) + 3)
    figure = Figure(figsize=(width, max(2.5, height)), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels):
        values = panel.values
        finite = values[np.isfinite(values)]
        low, high = finite.min() - 1, finite.max()
        ax.imshow(values, cmap="viridis", aspect="auto", vmin=low, vmax=high)
        ax.set_xticks(range(len(panel.columns)), panel.columns, rotation=30, ha="right")
        ax.set_yticks(range(len(panel.rows)), panel.rows)
        ax.set_title(panel.title)
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value):
                # dark text on viridis' bright (high) end, light text on its dark end
                ax.text(j, i, panel.labels[i, j], ha="center", va="center",
                        color="black" if value > (low + high) / 2 else "white",
                        fontweight="bold" if panel.bold[i, j] else "normal")
        if ENSEMBLE_ROW in panel.rows:
            i = panel.rows.index(ENSEMBLE_ROW)
            ax.add_patch(Rectangle((-0.5, i - 0.5), len(panel.columns), 1, fill=False, edgecolor="red", linewidth=3))
    figure.savefig(path, dpi=110)
    return path


def confusion_figure(record: dict[str, Any], path: Path) -> Path:
    """The record's confusion matrix with class names, titled with the answer's name and accuracy."""
    matrix = np.asarray(record["confusion_matrix"])
    size = max(5.0, 0.5 * len(record["class_names"]) + 3)
    figure = Figure(figsize=(size, size), layout="constrained")
    ax = figure.subplots()
    ConfusionMatrixDisplay(matrix, display_labels=record["class_names"]).plot(
        ax=ax, colorbar=False, xticks_rotation="vertical", values_format="d"
    )
    ax.set_title(f"{record['dataset']}: {display_name(record)} ({100 * record['accuracy']:.1f}%)")
    figure.savefig(path, dpi=110)
    return path
