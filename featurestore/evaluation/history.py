"""Finished evaluation runs under a root: the latest one, and accuracy across all of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from featurestore.errors import FeatureStoreError
from featurestore.paths import runs_dir


class NoRuns(FeatureStoreError, FileNotFoundError):
    """No finished evaluation run exists (or not the one asked for)."""


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def finished_runs(root=None) -> list[dict[str, Any]]:
    """``results.json`` documents of every finished run, oldest first (unreadable ones are ignored)."""
    base = runs_dir(root)
    documents = [_read(p) for p in base.glob("*/results.json")] if base.is_dir() else []
    return sorted((d for d in documents if d), key=lambda d: (d["created_at"], d["run_id"]))


def load_run(run_id: str | None = None, root=None) -> dict[str, Any]:
    """The ``results.json`` of run ``run_id``, or of the latest finished run."""
    runs = finished_runs(root)
    if run_id is not None:
        runs = [d for d in runs if d["run_id"] == run_id]
    if not runs and run_id is not None and (runs_dir(root) / run_id).is_dir():
        # a failed or stopped run leaves no directory: this one is running, or its process was killed
        raise NoRuns(f"{runs_dir(root) / run_id}: run {run_id!r} has not finished (it is still running, or its "
                     "process was killed before the report); wait for it, or delete the directory")
    if not runs:
        wanted = f"run {run_id!r}" if run_id else "finished evaluation run"
        raise NoRuns(
            f"{runs_dir(root)}: no {wanted} found; run `featurestore evaluate --dataset <name>` first"
        )
    return runs[-1]


HISTORY_KEYS = ["dataset", "model", "classifier", "train_per_class"]


def history_frame(root=None, dataset: str | None = None) -> pd.DataFrame:
    """Accuracy of every (dataset, model, classifier, train rows per class) in every finished run,
    one row each; ``train_per_class`` is ``"all"`` unless the run fitted on a subset."""
    rows = [
        {"run_id": d["run_id"], "created_at": d["created_at"], "dataset": r["dataset"], "model": r["model"],
         "classifier": r["classifier"], "train_per_class": str(d["parameters"].get("train_per_class") or "all"),
         "accuracy": r["accuracy"]}
        for d in finished_runs(root)
        for r in d["results"]
        if dataset is None or r["dataset"] == dataset
    ]
    return pd.DataFrame(rows, columns=["run_id", "created_at", *HISTORY_KEYS, "accuracy"])


def history_table(root=None, dataset: str | None = None) -> pd.DataFrame:
    """Runs as columns (oldest left), one row per (dataset, model, classifier, train rows per
    class), accuracy in %: a learning-curve run is not mixed with the runs that fitted on all rows."""
    frame = history_frame(root, dataset)
    if frame.empty:
        wanted = f"evaluation run of dataset {dataset!r}" if dataset else "evaluation run"
        raise NoRuns(f"{runs_dir(root)}: no finished {wanted} found; run `featurestore evaluate` first")
    table = frame.pivot_table(index=HISTORY_KEYS, columns="run_id", values="accuracy")
    return (100 * table[sorted(table.columns)]).round(2)
