"""Finished evaluation runs under a root: the latest one, and accuracy across all of them."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurestore.errors import FeatureStoreError
from featurestore.evaluation.runs import RESULTS_FILE, read_results, results_path, run_path
from featurestore.paths import check_name, existing_root, runs_dir, stores_dir


class NoRuns(FeatureStoreError, FileNotFoundError):
    """No finished evaluation run exists (or not the one asked for)."""


class DamagedRunWarning(UserWarning):
    """A run's ``results.json`` that cannot be read as a run's results: the run is skipped."""


#: what every reader of a run takes from its results.json (the schema requires more)
_NEEDED = ("run_id", "created_at", "parameters", "summary", "results")


def _read(run: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The results document of the run in ``run`` and ``None``, or ``None`` and why it is damaged
    (results.json is written whole, by a rename, so a half-written one is never read)."""
    try:
        document = read_results(run)
    except (OSError, ValueError) as error:
        return None, f"not readable JSON ({error})"
    if not isinstance(document, dict):
        return None, f"a JSON {type(document).__name__}, not a run's results"
    missing = [key for key in _NEEDED if key not in document]
    if missing:
        return None, f"no {', '.join(missing)}: not a run's results"
    return document, None


def _damaged(run: Path, problem: str) -> str:
    """One line naming the damaged results.json of the run in ``run``, why, and what to do."""
    return f"{results_path(run)}: damaged ({problem}); delete {run} or restore its {RESULTS_FILE}"


def finished_runs(root=None) -> list[dict[str, Any]]:
    """``results.json`` documents of every finished run, oldest first; a damaged one is skipped with
    a ``DamagedRunWarning`` (one run must not hide every other from ``report``)."""
    base = runs_dir(root)
    documents = []
    for path in sorted(base.glob(f"*/{RESULTS_FILE}")) if base.is_dir() else []:
        document, problem = _read(path.parent)
        if problem:
            warnings.warn(_damaged(path.parent, problem), DamagedRunWarning, stacklevel=2)
        else:
            documents.append(document)
    return sorted(documents, key=lambda d: (d["created_at"], d["run_id"]))


#: how many run ids the error for an unknown ``--run`` names, newest first
RUNS_NAMED = 5


def _no_runs(root, wanted: str, dataset: str | None = None, run_id: str | None = None) -> NoRuns:
    """The error for finding no ``wanted`` run; ``RootNotFound`` instead where the root itself is
    missing, so a typo in ``--root`` does not read as a root without runs. A ``dataset`` without
    any store under the root is more likely misspelt than not yet evaluated: then the error says
    so and names the datasets that have runs, instead of suggesting an evaluate that cannot run.
    A ``run_id`` that is no finished run (of ``dataset``) is a typo where there are finished runs:
    the newest of their ids are named."""
    existing_root(root)
    if dataset is not None and not (stores_dir(root) / dataset).is_dir():
        evaluated = sorted({name for d in finished_runs(root) for name in d["summary"]})
        return NoRuns(f"{runs_dir(root)}: no {wanted} found, and no dataset {dataset!r} has stores under "
                      f"{stores_dir(root)}; datasets with evaluation runs: {', '.join(evaluated) or 'none'}")
    finished = [d["run_id"] for d in finished_runs(root) if dataset is None or dataset in d["summary"]]
    if run_id is not None and finished:
        which = f"finished runs of dataset {dataset!r}" if dataset else "finished runs"
        more = f" (the newest {RUNS_NAMED} of {len(finished)})" if len(finished) > RUNS_NAMED else ""
        return NoRuns(f"{runs_dir(root)}: no {wanted} found; {which}, newest first{more}: "
                      f"{', '.join(reversed(finished[-RUNS_NAMED:]))}; show one with `featurestore report --run "
                      "RUN_ID`, or leave out --run for the latest")
    command = f"featurestore evaluate --dataset {dataset or '<name>'}"
    return NoRuns(f"{runs_dir(root)}: no {wanted} found; run `{command}` first")


def _wanted(run_id: str | None, dataset: str | None) -> str:
    """What ``load_run`` looked for, in words."""
    if run_id is None:
        return "finished evaluation run" + (f" of dataset {dataset!r}" if dataset else "")
    return f"run {run_id!r}" + (f" with results for dataset {dataset!r}" if dataset else "")


def load_run(run_id: str | None = None, root=None, dataset: str | None = None) -> dict[str, Any]:
    """The ``results.json`` of run ``run_id``, or of the latest finished run; with ``dataset``, of
    the latest run (or run ``run_id``) that has results for that dataset."""
    if run_id is None:
        runs = finished_runs(root)
    else:
        check_name("run", run_id)  # '' or '..' named the runs directory or the root: "has not finished"
        run = run_path(run_id, root)
        document, problem = _read(run) if results_path(run).exists() else (None, None)
        if problem:
            raise NoRuns(_damaged(run, problem))
        if document is None and run.is_dir():
            # a failed or stopped run leaves no directory: this one is running, or its process was killed
            raise NoRuns(f"{run}: run {run_id!r} has not finished (it is still running, or its "
                         "process was killed before the report); wait for it, or delete the directory")
        runs = [document] if document else []
    if dataset is not None:
        runs = [d for d in runs if dataset in d["summary"]]
    if not runs:
        raise _no_runs(root, _wanted(run_id, dataset), dataset, run_id)
    return runs[-1]


HISTORY_KEYS = ["dataset", "model", "classifier", "train_per_class", "inputs"]


def inputs_id(fingerprints: dict[str, str] | None) -> str:
    """A short id of the stores a result was computed from (their fingerprints cover the manifest,
    weights, preprocessing and layer): results of other inputs are not comparable."""
    if not fingerprints:
        return "-"
    joined = ",".join(f"{model}={fingerprint}" for model, fingerprint in sorted(fingerprints.items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:8]


#: stands in for "every row" (``None``) while the history is pivoted, so full fits sort after every N
_FULL_FIT = np.iinfo(np.int64).max
#: how a full fit's ``train_per_class`` reads in ``history_table``
FULL_FIT_LABEL = "all"


def fitted_per_class(parameters: dict[str, Any], record: dict[str, Any]) -> int | None:
    """The per-class cap ``record`` was fitted with, ``None`` for a full fit: the record's own
    ``train_per_class`` (``None`` where the run's cap capped no class), else, in runs written
    before records carried it, the run's parameter (``parameters``)."""
    if "train_per_class" in record:
        return record["train_per_class"]
    return parameters.get("train_per_class") or None


def history_frame(root=None, dataset: str | None = None) -> pd.DataFrame:
    """Accuracy of every (dataset, model, classifier, train rows per class, inputs) in every finished
    run, one row each; ``train_per_class`` is an integer (nullable ``Int64``), missing for a full fit
    (also a ``--train-per-class`` that capped no class), ``inputs`` tells apart results computed from
    other stores (a re-ingested dataset, other weights)."""
    rows = [
        {"run_id": d["run_id"], "created_at": d["created_at"], "dataset": r["dataset"], "model": r["model"],
         "classifier": r["classifier"], "train_per_class": fitted_per_class(d["parameters"], r),
         "inputs": inputs_id(r.get("store_fingerprints")), "accuracy": r["accuracy"]}
        for d in finished_runs(root)
        for r in d["results"]
        if dataset is None or r["dataset"] == dataset
    ]
    frame = pd.DataFrame(rows, columns=["run_id", "created_at", *HISTORY_KEYS, "accuracy"])
    frame["train_per_class"] = frame["train_per_class"].astype("Int64")
    return frame


def history_table(root=None, dataset: str | None = None) -> pd.DataFrame:
    """Runs as columns (oldest left), one row per (dataset, model, classifier, train rows per
    class, inputs), accuracy in %: a learning-curve run is not mixed with the runs that fitted on all
    rows, nor a result with results computed from other stores. Learning-curve rows are in numeric
    order of ``train_per_class`` (an int), the full fit (``"all"``) last."""
    frame = history_frame(root, dataset)
    if frame.empty:
        raise _no_runs(root, _wanted(None, dataset), dataset)
    frame["train_per_class"] = frame["train_per_class"].fillna(_FULL_FIT).astype(np.int64)
    table = frame.pivot_table(index=HISTORY_KEYS, columns="run_id", values="accuracy")
    level = HISTORY_KEYS.index("train_per_class")
    labels = [FULL_FIT_LABEL if n == _FULL_FIT else int(n) for n in table.index.levels[level]]
    table.index = table.index.set_levels(pd.Index(labels, dtype=object), level=level, verify_integrity=False)
    return (100 * table[sorted(table.columns)]).round(2)
