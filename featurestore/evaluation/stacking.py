"""Ensembles over several backbones of one dataset: stacking and early fusion.

Stacking follows the classic mlxtend recipe: one pipeline per backbone
(``ColumnSelector`` -> standardised logistic regression) and a linear-SVM meta-classifier.
The reported stacking is ``StackingCVClassifier``: the meta-classifier learns from
out-of-fold probabilities, so it never sees a base model's answer on that model's own
training rows. The same fitted base pipelines also give the averaged-probability vote and,
on request, the in-sample ``StackingClassifier`` (labelled leaky: its meta-classifier is fit
on in-sample probabilities).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from mlxtend.classifier import EnsembleVoteClassifier, StackingClassifier, StackingCVClassifier
from mlxtend.feature_selection import ColumnSelector
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC

from featurestore.classifiers import get_classifier, select_params
from featurestore.classifiers.selection import small_classes_expected, stratified_folds
from featurestore.evaluation.data import FIT_SPLITS, EvalData, kept_rows, load_eval_data, read_store_rows
from featurestore.evaluation.errors import TooFewRowsToStack
from featurestore.evaluation.single import base_record, run_classifier, score_fitted

#: folds of the out-of-fold probabilities the meta-classifier learns from
STACKING_FOLDS = 5
BASE_CLASSIFIER = "logreg"


def too_few_rows_to_stack(y_fit: np.ndarray, class_names: list[str]) -> str | None:
    """Why leak-free stacking cannot run on these train+val labels, or ``None``.

    Every fold's fit part must hold every class (a base model that never saw a class gives
    out-of-fold probabilities without its column), and a class with one row leaves it out of
    the fold that holds that row, however few folds there are.
    """
    single = [class_names[c] for c in np.flatnonzero(np.bincount(y_fit, minlength=len(class_names)) == 1)]
    if not single:
        return None
    names = ", ".join(repr(name) for name in single)
    which = f"class {names} has 1" if len(single) == 1 else f"classes {names} have 1"
    return f"stacking needs at least 2 train+val rows per class for its cross-validation; {which}"


def stacking_problem(dataset: str, models: list[str], root=None, train_per_class: int | None = None,
                     seed: int = 0) -> str | None:
    """Why leak-free stacking over ``models`` cannot run (see ``too_few_rows_to_stack``), or
    ``None``; reads only the stores' row tables, so the flow can skip it before any fit."""
    tables = [read_store_rows(dataset, model, root) for model in models]
    first = tables[0]
    failed = np.logical_or.reduce([table.failed for table in tables])
    keep = kept_rows(first.ids, first.labels, first.split, failed, train_per_class, seed)
    fit = keep & np.isin(first.split, FIT_SPLITS)
    return too_few_rows_to_stack(first.labels[fit], first.class_names)


def _meta_classifier(seed: int) -> LinearSVC:
    return LinearSVC(C=1.0, dual=False, max_iter=5000, random_state=seed)


def base_params_for(data: EvalData, model: str, seed: int, n_jobs: int) -> dict[str, Any]:
    """Choose the base logistic regression's C on one backbone's columns (val split or CV; see
    ``EvalData.selection_rows``)."""
    start, stop = data.blocks[model]
    fit_rows, score_rows = data.selection_rows()
    selection = select_params(
        get_classifier(BASE_CLASSIFIER),
        data.X[fit_rows, start:stop],
        data.y[fit_rows],
        data.X[score_rows, start:stop],
        data.y[score_rows],
        data.fold[fit_rows],
        seed=seed,
        n_jobs=n_jobs,
    )
    return selection.params


def backbone_pipelines(
    data: EvalData, base_params: dict[str, dict[str, Any]], seed: int, n_jobs: int
) -> list[Pipeline]:
    """One ``ColumnSelector`` -> logistic-regression pipeline per backbone, in ``data.models`` order."""
    spec = get_classifier(BASE_CLASSIFIER)
    n_fit = data.n_rows(*FIT_SPLITS)
    pipelines = []
    for model in data.models:
        start, stop = data.blocks[model]
        estimator = spec.build(base_params[model], seed, n_jobs, (n_fit, stop - start))
        pipelines.append(make_pipeline(ColumnSelector(cols=range(start, stop)), estimator))
    return pipelines


def _ensemble_identity(data: EvalData) -> dict[str, Any]:
    """The fields that name an ensemble of ``data.models``: its model name and its members."""
    return {"model": "+".join(data.models), "members": list(data.models), "kind": "ensemble"}


def _timed_fit(estimator: Any, X: np.ndarray, y: np.ndarray) -> float:
    """Fit ``estimator`` on ``X``, ``y``; return the seconds the fit took."""
    started = time.perf_counter()
    estimator.fit(X, y)
    return time.perf_counter() - started


def _ensemble_record(data: EvalData, classifier: str, estimator: Any, fit_seconds: float, extra: dict) -> dict:
    metrics, predict_seconds = score_fitted(estimator, data)
    return {
        **base_record(data, "+".join(data.models), classifier, "ensemble"),
        **_ensemble_identity(data),
        **metrics,
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        **extra,
    }


def stacking_records(
    data: EvalData,
    seed: int = 0,
    n_jobs: int = 1,
    base_params: dict[str, dict[str, Any]] | None = None,
    in_sample: bool = False,
) -> list[dict[str, Any]]:
    """Fit the leak-free stacking over ``data.models`` and return its records.

    ``base_params`` maps a model to its logistic regression's chosen parameters (e.g. from
    the single-classifier results); models without an entry are tuned here.
    """
    problem = too_few_rows_to_stack(data.part(*FIT_SPLITS)[1], data.class_names)
    if problem:
        raise TooFewRowsToStack(f"dataset {data.dataset!r}: {problem}; evaluate it with --no-stacking, "
                                "or give every class at least 2 train images")
    chosen = dict(base_params or {})
    for model in data.models:
        if model not in chosen:
            chosen[model] = base_params_for(data, model, seed, n_jobs)
    X_fit, y_fit = data.part(*FIT_SPLITS)
    folds = stratified_folds(y_fit, STACKING_FOLDS, seed)
    stack = StackingCVClassifier(
        classifiers=backbone_pipelines(data, chosen, seed, 1),
        meta_classifier=_meta_classifier(seed),
        use_probas=True,
        cv=folds,
        random_state=seed,
        n_jobs=n_jobs,
    )
    with small_classes_expected():
        fit_seconds = _timed_fit(stack, X_fit, y_fit)

    X_test, y_test = data.part("test")
    base_accuracy = {
        model: float(np.mean(pipe.predict(X_test) == y_test)) for model, pipe in zip(data.models, stack.clfs_)
    }
    shared = {"params": {"base": chosen, "meta": "LinearSVC(C=1)"}, "base_accuracy": base_accuracy}
    records = [
        _ensemble_record(
            data, "stacking_cv", stack, fit_seconds,
            {**shared, "params": {**shared["params"], "cv_folds": folds.n_splits}},
        )
    ]
    # The vote and the in-sample stack reuse the base pipelines fitted on all of train+val.
    vote = EnsembleVoteClassifier(clfs=stack.clfs_, voting="soft", fit_base_estimators=False, use_clones=False)
    records.append(_ensemble_record(data, "soft_vote", vote, _timed_fit(vote, X_fit, y_fit),
                                    {**shared, "params": {"base": chosen, "vote": "mean of probabilities"}}))
    if in_sample:
        leaky = StackingClassifier(
            classifiers=stack.clfs_,
            meta_classifier=_meta_classifier(seed),
            use_probas=True,
            fit_base_estimators=False,
            use_clones=False,
        )
        with warnings.catch_warnings():
            # mlxtend warns on every fit with fit_base_estimators=False that use_clones is forced to
            # False; that is what is wanted here (the base pipelines are the ones already fitted on
            # train+val), so the warning says nothing a user could act on
            warnings.filterwarnings("ignore", "fit_base_estimators=False enforces use_clones", UserWarning)
            leaky_seconds = _timed_fit(leaky, X_fit, y_fit)
        record = _ensemble_record(data, "stacking_in_sample", leaky, leaky_seconds, shared)
        record["leak_free"] = False
        records.append(record)
    return records


def early_fusion_record(data: EvalData, seed: int = 0, n_jobs: int = 1) -> dict[str, Any]:
    """Logistic regression on the concatenated features of ``data.models``."""
    record = run_classifier(data, get_classifier(BASE_CLASSIFIER), seed=seed, n_jobs=n_jobs)
    record.update(_ensemble_identity(data), classifier="early_fusion")
    return record


def evaluate_stacking(
    dataset: str,
    models: list[str],
    root=None,
    seed: int = 0,
    n_jobs: int = 1,
    base_params: dict[str, dict[str, Any]] | None = None,
    in_sample: bool = False,
    train_per_class: int | None = None,
) -> list[dict[str, Any]]:
    """Read the stores of ``models`` once and return the stacking records (see ``stacking_records``;
    ``train_per_class``: see ``load_eval_data``)."""
    data = load_eval_data(dataset, models, root, train_per_class, seed)
    return stacking_records(data, seed=seed, n_jobs=n_jobs, base_params=base_params, in_sample=in_sample)


def evaluate_early_fusion(dataset: str, models: list[str], root=None, seed: int = 0, n_jobs: int = 1,
                          train_per_class: int | None = None) -> dict:
    """Read the stores of ``models`` once and return the early-fusion record."""
    data = load_eval_data(dataset, models, root, train_per_class, seed)
    return early_fusion_record(data, seed=seed, n_jobs=n_jobs)
