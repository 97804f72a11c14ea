"""Choosing a classifier's hyper-parameters on the val split, by CV on train, or on a
stratified subsample of a large train split; then refitting on all rows."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from featurestore.classifiers.registry import ClassifierSpec

#: folds used when train carries no fold column and there is no val split
FALLBACK_FOLDS = 3
#: at most this many folds are held out in turn: every fold costs a full grid of fits
MAX_CV_FOLDS = 3
#: on a large train split (and no val split) every candidate is fitted on this many rows of a
#: seeded stratified subsample and scored on ``SUBSAMPLE_SCORE_ROWS`` other rows: k full grids
#: on e.g. Fashion-MNIST's 60k rows would cost k times the whole evaluation budget, and the
#: ranking of candidates barely moves between 15k and 48k fit rows (measured: the same C)
SUBSAMPLE_FIT_ROWS = 15_000
SUBSAMPLE_SCORE_ROWS = 10_000
#: train splits with more rows than this are subsampled; smaller ones are cross-validated
SUBSAMPLE_ABOVE = SUBSAMPLE_FIT_ROWS + SUBSAMPLE_SCORE_ROWS


@dataclass
class Selection:
    """The chosen hyper-parameters and how they were chosen."""

    params: dict[str, Any]
    #: "val" (scored on the val split), "cv" (mean accuracy over train folds), "subsample" (fitted
    #: on a stratified subsample of a large train split, scored on a disjoint one) or "default"
    #: (a single candidate)
    method: str
    #: one ``{"params": ..., "accuracy": ...}`` per candidate, in grid order
    scores: list[dict[str, Any]] = field(default_factory=list)
    #: rows each candidate was fitted on and scored on (for "cv", the mean over the folds); 0 for "default"
    fit_rows: int = 0
    score_rows: int = 0


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
    if spec.score_grid is not None:
        return spec.score_grid(spec.grid, seed, n_jobs, X_fit, y_fit, X_score, y_score)
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


def _learnable(y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The splits whose fit part holds every class of ``y``: on a tiny train split a fold may
    take a class's only rows, and most classifiers cannot be fitted on what is left."""
    n_classes = len(np.unique(y))
    return [(fit, held) for fit, held in splits if len(np.unique(y[fit])) == n_classes]


@contextmanager
def small_classes_expected() -> Iterator[None]:
    """Silence only scikit-learn's warning that a class has fewer rows than the folds: on a small
    dataset that is expected, and ``stratified_folds`` already takes as few folds as it can."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        yield


def stratified_folds(y: np.ndarray, n_splits: int, seed: int) -> StratifiedKFold:
    """A seeded shuffled ``StratifiedKFold`` with at most ``n_splits`` folds and at least two, no
    more than the smallest class has rows where it can (scikit-learn refuses more folds than every
    class has rows)."""
    smallest = int(np.unique(y, return_counts=True)[1].min())
    return StratifiedKFold(n_splits=max(2, min(n_splits, smallest)), shuffle=True, random_state=seed)


def cv_splits(y: np.ndarray, folds: np.ndarray | None, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The dataset's own folds when train has at least two, else a seeded stratified split; only
    splits whose fit part holds every class, at most ``MAX_CV_FOLDS`` of them (none when a
    train split is too small for any)."""
    present = np.unique(folds[folds >= 0]) if folds is not None else []
    splits = _learnable(y, [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in present])
    if len(present) < 2 or not splits:
        splitter = stratified_folds(y, FALLBACK_FOLDS, seed)
        if np.unique(y, return_counts=True)[1].max() < splitter.n_splits:
            return []
        with small_classes_expected():
            splits = _learnable(y, list(splitter.split(np.zeros(len(y)), y)))
    return splits[:MAX_CV_FOLDS]


def subsample_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint seeded stratified samples of ``SUBSAMPLE_FIT_ROWS`` and ``SUBSAMPLE_SCORE_ROWS``
    row indices of ``y``, each sorted (row order as in train). The row of a class with one row is
    fitted, never scored: a stratified split refuses such a class, and scoring cannot use it."""
    if len(y) < SUBSAMPLE_ABOVE:
        raise ValueError(f"a selection subsample needs at least {SUBSAMPLE_ABOVE} train rows, got {len(y)}")
    labels, counts = np.unique(y, return_counts=True)
    alone = np.flatnonzero(np.isin(y, labels[counts < 2]))
    rest = np.setdiff1d(np.arange(len(y)), alone)
    splitter = StratifiedShuffleSplit(
        n_splits=1, train_size=SUBSAMPLE_FIT_ROWS - len(alone), test_size=SUBSAMPLE_SCORE_ROWS, random_state=seed
    )
    fit, score = next(splitter.split(np.zeros(len(rest)), y[rest]))
    return np.sort(np.concatenate([alone, rest[fit]])), np.sort(rest[score])


def selection_splits(
    y: np.ndarray, folds: np.ndarray | None, seed: int
) -> tuple[str, list[tuple[np.ndarray, np.ndarray]]]:
    """How candidates are scored without a val split: ``("subsample", [one split])`` when train has
    more than ``SUBSAMPLE_ABOVE`` rows, else ``("cv", cv_splits(...))``."""
    if len(y) > SUBSAMPLE_ABOVE:
        return "subsample", [subsample_split(y, seed)]
    return "cv", cv_splits(y, folds, seed)


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
    (``folds``: one fold number per train row, -1 for none), or on a stratified subsample when
    train is large (see ``selection_splits``). Ties go to the earlier candidate, i.e. the
    stronger regularisation. The first candidate is the default when there is nothing to select
    on: a single candidate, or no val split and a train split too small for any CV fold.
    """
    default = Selection(params=dict(spec.grid[0]), method="default")
    if len(spec.grid) == 1:
        return default
    if y_val is not None and len(y_val):
        accuracies = _walk_grid(spec, X_train, y_train, X_val, y_val, seed, n_jobs)
        method, fit_rows, score_rows = "val", len(y_train), len(y_val)
    else:
        method, splits = selection_splits(y_train, folds, seed)
        if not splits:
            return default
        per_fold = [
            _walk_grid(spec, X_train[fit], y_train[fit], X_train[held], y_train[held], seed, n_jobs)
            for fit, held in splits
        ]
        accuracies = list(np.mean(per_fold, axis=0))
        fit_rows = round(np.mean([len(fit) for fit, _ in splits]))
        score_rows = round(np.mean([len(held) for _, held in splits]))
    best = int(np.argmax(accuracies))
    return Selection(
        params=dict(spec.grid[best]),
        method=method,
        scores=[_score(spec, p, a, (int(fit_rows), X_train.shape[1])) for p, a in zip(spec.grid, accuracies)],
        fit_rows=int(fit_rows),
        score_rows=int(score_rows),
    )


def _score(spec: ClassifierSpec, params: Mapping[str, Any], accuracy: float, shape: tuple[int, int]) -> dict[str, Any]:
    """One candidate's score; ``used`` where it ran with other values than the grid's (kNN's k
    clipped to the fit rows), so that two candidates that ran alike read as such."""
    entry = {"params": dict(params), "accuracy": float(accuracy)}
    used = spec.used_params(params, shape)
    return entry if used == entry["params"] else {**entry, "used": used}


def fit_classifier(
    spec: ClassifierSpec, params: dict[str, Any], X: np.ndarray, y: np.ndarray, seed: int = 0, n_jobs: int = 1
) -> ClassifierMixin:
    """Build ``spec`` with ``params`` and fit it on ``(X, y)``."""
    return spec.build(params, seed, n_jobs, X.shape).fit(X, y)
