"""The classifier registry and hyper-parameter selection, on scikit-learn's digits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import train_test_split

from featurestore.classifiers import ClassifierSpec, classifier_names, fit_classifier, get_classifier, select_params
from featurestore.classifiers import registry
from featurestore.classifiers import selection as selection_module
from featurestore.errors import FeatureStoreError, InvalidName
from featurestore.evaluation.threads import limit_native_threads

# one native thread per fit, as the evaluate tasks run them: oversubscribed BLAS crawls on 2 busy cores
limit_native_threads(1)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=0)
    return X_train, y_train, X_val, y_val, X_test, y_test


def test_builtin_classifiers_are_registered_with_grids():
    assert classifier_names()[:4] == ["logreg", "linear_svm", "lightgbm", "knn"]
    assert get_classifier("logreg").grid[0]["C"] <= 1e-3 < 1.0 <= get_classifier("logreg").grid[-1]["C"]
    assert get_classifier("linear_svm").has_proba is False


def test_unknown_classifier_is_one_line_error_listing_known_ones():
    with pytest.raises(InvalidName) as error:
        get_classifier("random_forest")
    message = str(error.value)
    assert isinstance(error.value, FeatureStoreError) and "\n" not in message
    assert "random_forest" in message and "logreg" in message and "knn" in message


@pytest.mark.parametrize("name", ["logreg", "linear_svm", "lightgbm", "knn"])
def test_each_classifier_selects_on_val_refits_and_learns_digits(digits, name):
    X_train, y_train, X_val, y_val, X_test, y_test = digits
    spec = get_classifier(name)
    selection = select_params(spec, X_train, y_train, X_val, y_val)
    assert selection.method == "val"
    assert [s["params"] for s in selection.scores] == [dict(p) for p in spec.grid]
    best = max(s["accuracy"] for s in selection.scores)
    assert selection.scores[[dict(p) for p in spec.grid].index(selection.params)]["accuracy"] == best
    model = fit_classifier(spec, selection.params, np.vstack([X_train, X_val]), np.concatenate([y_train, y_val]))
    assert np.mean(model.predict(X_test) == y_test) > 0.93
    if spec.has_proba:
        assert np.allclose(model.predict_proba(X_test).sum(axis=1), 1)


def test_val_scores_are_plain_refits_of_each_candidate(digits):
    """Selection scores equal fitting each candidate on its own with scikit-learn."""
    X_train, y_train, X_val, y_val, _, _ = digits
    spec = get_classifier("linear_svm")
    selection = select_params(spec, X_train, y_train, X_val, y_val, seed=3)
    for entry in selection.scores:
        model = spec.build(entry["params"], 3, 1, X_train.shape).fit(X_train, y_train)
        assert entry["accuracy"] == pytest.approx(np.mean(model.predict(X_val) == y_val))


def test_warm_started_grid_walk_matches_cold_fits(digits):
    X_train, y_train, X_val, y_val, _, _ = digits
    spec = get_classifier("logreg")
    selection = select_params(spec, X_train, y_train, X_val, y_val)
    for entry in selection.scores:
        cold = spec.build(entry["params"], 0, 1, X_train.shape).fit(X_train, y_train)
        assert entry["accuracy"] == pytest.approx(np.mean(cold.predict(X_val) == y_val), abs=2 / len(y_val))


def test_without_val_selection_uses_the_train_folds(digits):
    """Five manifest folds: the first three are held out in turn (each costs a grid of fits)."""
    X_train, y_train, _, _, _, _ = digits
    folds = np.arange(len(y_train)) % 5
    spec = get_classifier("knn")
    selection = select_params(spec, X_train, y_train, folds=folds)
    assert selection.method == "cv"
    k = selection.params["k"]
    per_fold = []
    for f in range(3):
        model = spec.build({"k": k}, 0, 1, X_train.shape).fit(X_train[folds != f], y_train[folds != f])
        per_fold.append(np.mean(model.predict(X_train[folds == f]) == y_train[folds == f]))
    chosen = next(s for s in selection.scores if s["params"] == {"k": k})
    assert chosen["accuracy"] == pytest.approx(np.mean(per_fold))


def test_large_train_without_val_holds_out_one_fold(digits, monkeypatch):
    X_train, y_train, _, _, _, _ = digits
    monkeypatch.setattr(selection_module, "HOLDOUT_ROWS", len(y_train) - 1)
    folds = np.arange(len(y_train)) % 5
    selection = select_params(get_classifier("knn"), X_train, y_train, folds=folds)
    assert selection.method == "holdout"
    splits = selection_module.cv_splits(y_train, folds, 0)
    assert len(splits) == 1 and np.array_equal(splits[0][1], np.flatnonzero(folds == 0))


def test_lightgbm_skips_pca_wider_than_the_data():
    spec = get_classifier("lightgbm")
    params = {"pca": 64, "n_estimators": 5, "learning_rate": 0.1, "num_leaves": 7}
    narrow = spec.build(params, 0, 1, (1000, 32))
    few_rows = spec.build(params, 0, 1, (40, 1280))
    wide = spec.build(params, 0, 1, (1000, 1280))
    assert "pca" not in narrow.named_steps and "pca" not in few_rows.named_steps
    assert wide.named_steps["pca"].n_components == 64


def test_adding_a_classifier_is_one_registry_entry(digits, monkeypatch):
    monkeypatch.setattr(registry.CLASSIFIERS, "_entries", dict(registry.CLASSIFIERS._entries))
    spec = registry.register(ClassifierSpec(
        name="ridge", description="ridge classifier", has_proba=False,
        build=lambda params, seed, n_jobs, shape: RidgeClassifier(alpha=params["alpha"]),
        grid=({"alpha": 1.0}, {"alpha": 10.0}),
    ))
    assert get_classifier("ridge") is spec and "ridge" in classifier_names()
    with pytest.raises(ValueError):
        registry.register(spec)
    X_train, y_train, X_val, y_val, _, _ = digits
    assert select_params(spec, X_train, y_train, X_val, y_val).params in ({"alpha": 1.0}, {"alpha": 10.0})
