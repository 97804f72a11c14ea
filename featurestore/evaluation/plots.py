"""Report pictures. Uses matplotlib's object API (no pyplot), so it is safe in worker threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import ConfusionMatrixDisplay

from featurestore.evaluation.summary import display_name

ENSEMBLE_ROW = "ensemble"


def _grid(records: list[dict[str, Any]]) -> tuple[list[str], list[str], np.ndarray]:
    """Rows: backbones then one ensemble row; columns: classifiers then ensemble methods."""
    singles = [r for r in records if r["kind"] == "single"]
    ensembles = [r for r in records if r["kind"] == "ensemble"]
    rows = list(dict.fromkeys(r["model"] for r in singles)) + ([ENSEMBLE_ROW] if ensembles else [])
    columns = list(dict.fromkeys(r["classifier"] for r in singles)) + list(
        dict.fromkeys(r["classifier"] for r in ensembles)
    )
    values = np.full((len(rows), len(columns)), np.nan)
    for r in records:
        row = rows.index(ENSEMBLE_ROW if r["kind"] == "ensemble" else r["model"])
        values[row, columns.index(r["classifier"])] = 100 * r["accuracy"]
    return rows, columns, values


def accuracy_figure(records: list[dict[str, Any]], path: Path) -> Path:
    """Heat map of test accuracy, one panel per dataset: backbones x classifiers, ensembles framed in red."""
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    grids = [_grid([r for r in records if r["dataset"] == d]) for d in datasets]
    height = sum(1.2 + 0.45 * len(rows) for rows, _, _ in grids)
    width = max(6.0, 1.3 * max((len(c) for _, c, _ in grids), default=1) + 3)
    figure = Figure(figsize=(width, max(2.5, height)), layout="constrained")
    axes = figure.subplots(len(datasets), 1, squeeze=False)[:, 0]
    for ax, dataset, (rows, columns, values) in zip(axes, datasets, grids):
        finite = values[np.isfinite(values)]
        low, high = finite.min() - 1, finite.max()
        ax.imshow(values, cmap="viridis", aspect="auto", vmin=low, vmax=high)
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_title(f"{dataset}: test accuracy (%)")
        best = np.nanmax(values)
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value):
                # dark text on viridis' bright (high) end, light text on its dark end
                ax.text(j, i, f"{value:.1f}", ha="center", va="center",
                        color="black" if value > (low + high) / 2 else "white",
                        fontweight="bold" if value == best else "normal")
        if ENSEMBLE_ROW in rows:
            i = rows.index(ENSEMBLE_ROW)
            ax.add_patch(Rectangle((-0.5, i - 0.5), len(columns), 1, fill=False, edgecolor="red", linewidth=3))
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
