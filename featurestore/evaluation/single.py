"""One (dataset, model, classifier) answer: select on val/CV, refit on train+val, score on test."""

from __future__ import annotations

import time
from typing import Any

from featurestore.classifiers import ClassifierSpec, fit_classifier, get_classifier, select_params
from featurestore.evaluation.data import FIT_SPLITS, EvalData, load_eval_data
from featurestore.evaluation.metrics import class_scores, compute_metrics


def base_record(data: EvalData, model: str, classifier: str, kind: str) -> dict[str, Any]:
    """The identifying fields every result record starts with."""
    return {
        "dataset": data.dataset,
        "model": model,
        "classifier": classifier,
        "kind": kind,
        "leak_free": True,
        "class_names": data.class_names,
        "n_fit": data.n_rows(*FIT_SPLITS),
        "train_per_class": data.train_per_class,
        "n_test": data.n_rows("test"),
        "n_failed_rows": data.n_failed,
        "store_fingerprints": dict(data.fingerprints),
    }


def score_fitted(estimator: Any, data: EvalData) -> tuple[dict[str, Any], float]:
    """Metrics of a fitted estimator on the test split, and the seconds prediction took."""
    X_test, y_test = data.part("test")
    started = time.perf_counter()
    predicted = estimator.predict(X_test)
    scores = class_scores(estimator, X_test, len(data.class_names))
    seconds = time.perf_counter() - started
    return compute_metrics(y_test, predicted, scores, data.class_names), seconds


def run_classifier(data: EvalData, spec: ClassifierSpec, seed: int = 0, n_jobs: int = 1) -> dict[str, Any]:
    """Select ``spec``'s hyper-parameters (see ``EvalData.selection_rows``), refit on train+val,
    score on test; return a result record."""
    fit_rows, score_rows = data.selection_rows()
    started = time.perf_counter()
    selection = select_params(
        spec, data.X[fit_rows], data.y[fit_rows], data.X[score_rows], data.y[score_rows], data.fold[fit_rows],
        seed=seed, n_jobs=n_jobs,
    )
    selection_seconds = time.perf_counter() - started
    X_fit, y_fit = data.part(*FIT_SPLITS)
    started = time.perf_counter()
    estimator = fit_classifier(spec, selection.params, X_fit, y_fit, seed=seed, n_jobs=n_jobs)
    fit_seconds = time.perf_counter() - started
    metrics, predict_seconds = score_fitted(estimator, data)
    return {
        **base_record(data, data.models[0], spec.name, "single"),
        **metrics,
        "params": spec.used_params(selection.params, X_fit.shape),
        "selection": {
            "method": selection.method,
            "scores": selection.scores,
            "seconds": selection_seconds,
            "fit_rows": selection.fit_rows,
            "score_rows": selection.score_rows,
        },
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
    }


def evaluate_classifier(
    dataset: str, model: str, classifier: str, root=None, seed: int = 0, n_jobs: int = 1,
    train_per_class: int | None = None,
) -> dict[str, Any]:
    """Read the (dataset, model) store once and return ``classifier``'s result record
    (``train_per_class``: see ``load_eval_data``)."""
    spec = get_classifier(classifier)
    data = load_eval_data(dataset, [model], root, train_per_class, seed)
    return run_classifier(data, spec, seed=seed, n_jobs=n_jobs)
