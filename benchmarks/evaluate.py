"""Benchmark: the evaluate flow against the same grid as a plain sequential scikit-learn script.

    python benchmarks/evaluate.py --root DIR [--dataset fashion-mnist]
        [--models efficientnet_lite0,efficientnet_lite1,efficientnet_lite2] [--task-runner threads]
        [--train-per-class N] [--skip-baseline]

The stores must exist under ``--root`` (``featurestore ingest`` + ``featurestore extract``).
Both sides run in this process, one after the other, on the same stores: the flow with its
task runner, then a for-loop over the same classifiers, hyper-parameter grids and ensembles
with scikit-learn's defaults (no task runner, no thread caps, every candidate fitted from
scratch). It prints both wall-clock times, their ratio, the accuracy table of each side and
whether leak-free stacking beat the best single backbone, as Markdown for benchmarks/RESULTS.md.
``--train-per-class N`` fits both sides on at most N seeded train+val images per class, with
hyper-parameters chosen by CV within them, and scores them on the whole test split (the issue's
reference protocol is N = 600).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from mlxtend.classifier import EnsembleVoteClassifier, StackingCVClassifier
from mlxtend.feature_selection import ColumnSelector
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

import featurestore
from featurestore.classifiers import classifier_names, get_classifier
from featurestore.classifiers.selection import selection_splits, stratified_folds
from featurestore.evaluation.data import kept_rows
from featurestore.evaluation.stacking import STACKING_FOLDS

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

MODELS = "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2"


def _select_and_fit(name, X_train, y_train, X_val, y_val, folds, X_fit, y_fit, seed):
    """Plain grid search: fit every candidate from scratch, keep the best on val (or on the
    train folds or the stratified subsample of a large train split, as the flow does), refit on train+val."""
    spec = get_classifier(name)
    scores = []
    for params in spec.grid:
        if len(y_val):
            model = spec.build(params, seed, -1, X_train.shape).fit(X_train, y_train)
            scores.append(np.mean(model.predict(X_val) == y_val))
        else:
            scores.append(np.mean([
                np.mean(spec.build(params, seed, -1, X_train[a].shape).fit(X_train[a], y_train[a]).predict(X_train[b])
                        == y_train[b]) for a, b in selection_splits(y_train, folds, seed)[1]]))
    best = dict(spec.grid[int(np.argmax(scores))])
    return spec.build(best, seed, -1, X_fit.shape).fit(X_fit, y_fit), best


def sequential_baseline(root: str, dataset: str, models: list[str], seed: int,
                        train_per_class: int | None = None) -> dict[tuple[str, str], float]:
    """The whole grid as a plain script; returns test accuracy per (model, classifier).

    It uses the rows the flow uses: none that failed in any store, and with ``train_per_class`` at
    most N train+val rows per class (``kept_rows``, the flow's seeded draw). Where that draw left a
    row out, hyper-parameters are chosen by CV within the drawn train+val rows (their train folds
    held out in turn, the drawn val rows in every fit part), never on the rest of val, as the flow
    does since 46e6cd2; an N that capped nothing is a full fit, selected on val as the flow does.
    """
    loaded = [featurestore.load_arrays(dataset, m, root=root) for m in models]
    split = np.asarray(loaded[0].split).astype(str)
    y = loaded[0].labels
    failed = np.logical_or.reduce([np.zeros(len(y), bool) if a.failed is None else np.asarray(a.failed, bool)
                                   for a in loaded])
    keep = kept_rows(np.asarray(loaded[0].ids).astype(str), y, split, failed, train_per_class, seed)
    capped = bool(np.any(~keep & ~failed))
    split = np.where(keep, split, "unused")  # rows outside the subset become a split no step uses
    test, fit = (split == "test"), np.isin(split, ["train", "val"])
    # what candidates are fitted on and scored on: CV within the drawn rows, else train and val
    train, val = (fit, np.zeros_like(fit)) if capped else ((split == "train"), (split == "val"))
    folds = loaded[0].fold[train]
    accuracy, chosen = {}, {}
    for model, arrays in zip(models, loaded):
        X = arrays.features.astype(np.float32)
        for name in classifier_names():
            estimator, params = _select_and_fit(name, X[train], y[train], X[val], y[val], folds, X[fit], y[fit], seed)
            accuracy[(model, name)] = float(np.mean(estimator.predict(X[test]) == y[test]))
            if name == "logreg":
                chosen[model] = params
    X = np.concatenate([a.features.astype(np.float32) for a in loaded], axis=1)
    bounds = np.cumsum([0] + [a.features.shape[1] for a in loaded])
    spec = get_classifier("logreg")
    pipelines = [make_pipeline(ColumnSelector(cols=range(bounds[i], bounds[i + 1])),
                               spec.build(chosen[m], seed, -1, (int(fit.sum()), int(bounds[i + 1] - bounds[i]))))
                 for i, m in enumerate(models)]
    stack = StackingCVClassifier(pipelines, LinearSVC(dual=False, max_iter=5000, random_state=seed), use_probas=True,
                                 cv=stratified_folds(y[fit], STACKING_FOLDS, seed), random_state=seed)
    stack.fit(X[fit], y[fit])
    joined = "+".join(models)
    accuracy[(joined, "stacking_cv")] = float(np.mean(stack.predict(X[test]) == y[test]))
    vote = EnsembleVoteClassifier(stack.clfs_, voting="soft", fit_base_estimators=False, use_clones=False)
    accuracy[(joined, "soft_vote")] = float(np.mean(vote.fit(X[fit], y[fit]).predict(X[test]) == y[test]))
    fusion, _ = _select_and_fit("logreg", X[train], y[train], X[val], y[val], folds, X[fit], y[fit], seed)
    accuracy[(joined, "early_fusion")] = float(np.mean(fusion.predict(X[test]) == y[test]))
    return accuracy


def main() -> None:
    """Run both sides, print the comparison as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--task-runner", default="threads")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--train-per-class", type=int,
                        help="fit on at most N seeded train+val images per class (selection by CV within them)")
    args = parser.parse_args()
    models = args.models.split(",")

    from flows.evaluate import run_evaluate

    started = time.perf_counter()
    run_dir = Path(run_evaluate(task_runner=args.task_runner, workers=args.workers, datasets=[args.dataset],
                                models=models, seed=args.seed, root=args.root,
                                train_per_class=args.train_per_class))
    flow_seconds = time.perf_counter() - started
    document = json.loads((run_dir / "results.json").read_text())
    rows = {(r["model"], r["classifier"]): r["accuracy"] for r in document["results"]}

    baseline, baseline_seconds = {}, float("nan")
    if not args.skip_baseline:
        started = time.perf_counter()
        baseline = sequential_baseline(args.root, args.dataset, models, args.seed, args.train_per_class)
        baseline_seconds = time.perf_counter() - started

    record = document["results"][0]
    sizes = f"fit on {record['n_fit']} (train+val), test {record['n_test']}"
    print(f"## evaluate: {args.dataset} ({sizes}), {len(models)} models, cpu_count {os.cpu_count()}\n")
    print(f"* flow ({args.task_runner}, {args.workers} workers): {flow_seconds:.1f} s  (run {run_dir.name})")
    if baseline:
        print(f"* plain sequential scikit-learn script: {baseline_seconds:.1f} s")
        print(f"* speed-up: {baseline_seconds / flow_seconds:.2f}x\n")
    print("| model | classifier | flow accuracy % | script accuracy % |\n|---|---|---|---|")
    for (model, classifier), value in sorted(rows.items(), key=lambda item: -item[1]):
        other = baseline.get((model, classifier))
        print(f"| {model} | {classifier} | {100 * value:.2f} | {'' if other is None else f'{100 * other:.2f}'} |")
    print(f"\n{args.dataset}: {document['summary'][args.dataset]}")
    stacking = next(r for r in document["results"] if r["classifier"] == "stacking_cv")
    verdict = "beat" if stacking["gain_over_best_single"] > 0 else "did not beat"
    print(f"leak-free stacking {verdict} the best single backbone ({stacking['best_single']}) by "
          f"{stacking['gain_over_best_single']:+.2f} points")


if __name__ == "__main__":
    main()
