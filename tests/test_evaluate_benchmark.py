"""benchmarks/evaluate.py's plain scikit-learn baseline does the flow's work: on small digits
stores its accuracies are the library's (the functions the flow's tasks call)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from _evaluate_stores import DATASET, MODELS, write_digits_stores
from featurestore.evaluation import evaluate_classifier, evaluate_early_fusion, evaluate_stacking
from featurestore.evaluation.threads import limit_native_threads

limit_native_threads(1)

COMPARED = ("logreg", "linear_svm", "knn")


def _benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "evaluate.py"
    spec = importlib.util.spec_from_file_location("benchmark_evaluate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmark-root")
    write_digits_stores(root)
    return root


# 3 and 20: selection by CV within the drawn train+val rows (3 also takes fewer stacking folds);
# 1000 caps nothing (a full fit, selected on val)
@pytest.mark.parametrize("per_class", [3, 20, 1000])
def test_baseline_fits_and_selects_on_the_rows_the_flow_does(root, per_class):
    baseline = _benchmark().sequential_baseline(str(root), DATASET, list(MODELS), 0, per_class)
    for model in MODELS:
        for classifier in COMPARED:
            record = evaluate_classifier(DATASET, model, classifier, root=root, train_per_class=per_class)
            assert baseline[(model, classifier)] == pytest.approx(record["accuracy"]), (model, classifier)
    (stacking,) = [r for r in evaluate_stacking(DATASET, list(MODELS), root=root, train_per_class=per_class)
                   if r["classifier"] == "stacking_cv"]
    assert baseline[("+".join(MODELS), "stacking_cv")] == pytest.approx(stacking["accuracy"])
    fusion = evaluate_early_fusion(DATASET, list(MODELS), root=root, train_per_class=per_class)
    assert baseline[("+".join(MODELS), "early_fusion")] == pytest.approx(fusion["accuracy"])
