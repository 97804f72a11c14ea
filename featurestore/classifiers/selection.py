"""Choosing a classifier's hyper-parameters on the val split, or by CV on train, then refitting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.model_selection import StratifiedKFold

from featurestore.classifiers.registry import ClassifierSpec

#: folds used when train carries no fold column and there is no val split
FALLBACK_FOLDS = 3
#: at most this many folds are held out in turn: every fold costs a full grid of fits
MAX_CV_FOLDS = 3
#: above this many train rows (and no val split) only the first fold is held out: k full grids
#: on e.g. Fashion-MNIST's 60k rows would cost k times the whole evaluation budget
HOLDOUT_ROWS = 20_000


@dataclass
class Selection:
    """The chosen hyper-parameters and how they were chosen."""

    params: dict[str, Any]
    #: "val" (scored on the val split), "cv" (mean accuracy over train folds), "holdout" (one
    #: train fold held out, for large train sets) or "default" (a single candidate)
    method: str
    #: one ``{"params": ..., "accuracy": ...}`` per candidate, in grid order
    scores: list[dict[str, Any]] = field(default_factory=list)


def _walk_grid(
    spec: ClassifierSpec,
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    X_score: np.ndarray,
    y_score: np.ndarray,
    seed: int,
    n_jobs: int,
) -> list[float]:
    """Fit every candidate on ``X_fit`` and return its accuracy on ``X_score``."""
    accuracies = []
    estimator = None
    for params in spec.grid:
        if spec.warm_start_step and estimator is not None:
            # reuse the previous solution: the next C starts from the last optimum
            estimator.set_params(**{f"{spec.warm_start_step}__{k}": v for k, v in params.items()})
        else:
            estimator = spec.build(params, seed, n_jobs, X_fit.shape)
            if spec.warm_start_step:
                estimator.set_params(**{f"{spec.warm_start_step}__warm_start": True})
        estimator.fit(X_fit, y_fit)
        accuracies.append(float(np.mean(estimator.predict(X_score) == y_score)))
    return accuracies


def cv_splits(y: np.ndarray, folds: np.ndarray | None, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The dataset's own folds when train has at least two, else a seeded stratified split;
    at most ``MAX_CV_FOLDS`` of them, and only the first when train has more than ``HOLDOUT_ROWS`` rows."""
    present = np.unique(folds[folds >= 0]) if folds is not None else []
    if len(present) >= 2:
        splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in present]
    else:
        smallest = int(np.unique(y, return_counts=True)[1].min())
        n_splits = max(2, min(FALLBACK_FOLDS, smallest))
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = list(splitter.split(np.zeros(len(y)), y))
    return splits[:1] if len(y) > HOLDOUT_ROWS else splits[:MAX_CV_FOLDS]


def select_params(
    spec: ClassifierSpec,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    folds: np.ndarray | None = None,
    seed: int = 0,
    n_jobs: int = 1,
) -> Selection:
    """Pick the candidate from ``spec.grid`` with the best accuracy.

    Scored on the val split when there is one, else by mean accuracy over train's folds
    (``folds``: one fold number per train row, -1 for none; see ``cv_splits``). Ties go to the earlier
    candidate, i.e. the stronger regularisation.
    """
    if len(spec.grid) == 1:
        return Selection(params=dict(spec.grid[0]), method="default")
    if y_val is not None and len(y_val):
        accuracies = _walk_grid(spec, X_train, y_train, X_val, y_val, seed, n_jobs)
        method = "val"
    else:
        splits = cv_splits(y_train, folds, seed)
        per_fold = [
            _walk_grid(spec, X_train[fit], y_train[fit], X_train[held], y_train[held], seed, n_jobs)
            for fit, held in splits
        ]
        accuracies = list(np.mean(per_fold, axis=0))
        method = "cv" if len(splits) > 1 else "holdout"
    best = int(np.argmax(accuracies))
    return Selection(
        params=dict(spec.grid[best]),
        method=method,
        scores=[{"params": dict(p), "accuracy": float(a)} for p, a in zip(spec.grid, accuracies)],
    )


def fit_classifier(
    spec: ClassifierSpec, params: dict[str, Any], X: np.ndarray, y: np.ndarray, seed: int = 0, n_jobs: int = 1
) -> ClassifierMixin:
    """Build ``spec`` with ``params`` and fit it on ``(X, y)``."""
    return spec.build(params, seed, n_jobs, X.shape).fit(X, y)
