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


def test_unknown_classifier_is_one_line_error_listing_known_ones():
    with pytest.raises(InvalidName) as error:
        get_classifier("random_forest")
    message = str(error.value)
    assert isinstance(error.value, FeatureStoreError) and "\n" not in message
    assert "random_forest" in message and "logreg" in message and "knn" in message


@pytest.mark.parametrize(
    "name, has_proba", [("logreg", True), ("linear_svm", False), ("lightgbm", True), ("knn", True)])
def test_each_classifier_selects_on_val_refits_and_learns_digits(digits, name, has_proba):
    X_train, y_train, X_val, y_val, X_test, y_test = digits
    spec = get_classifier(name)
    selection = select_params(spec, X_train, y_train, X_val, y_val)
    assert selection.method == "val"
    assert [s["params"] for s in selection.scores] == [dict(p) for p in spec.grid]
    best = max(s["accuracy"] for s in selection.scores)
    assert selection.scores[[dict(p) for p in spec.grid].index(selection.params)]["accuracy"] == best
    model = fit_classifier(spec, selection.params, np.vstack([X_train, X_val]), np.concatenate([y_train, y_val]))
    assert np.mean(model.predict(X_test) == y_test) > 0.93
    assert hasattr(model[-1], "predict_proba") is has_proba
    if has_proba:
        assert np.allclose(model.predict_proba(X_test).sum(axis=1), 1)


def test_val_scores_are_plain_refits_of_each_candidate(digits):
    """Selection scores equal fitting each candidate on its own with scikit-learn."""
    X_train, y_train, X_val, y_val, _, _ = digits
    spec = get_classifier("knn")
    selection = select_params(spec, X_train, y_train, X_val, y_val, seed=3)
    for entry in selection.scores:
        model = spec.build(entry["params"], 3, 1, X_train.shape).fit(X_train, y_train)
        assert entry["accuracy"] == pytest.approx(np.mean(model.predict(X_val) == y_val))


def test_knn_scores_its_grid_with_one_search_as_plain_fits_would(digits):
    X_train, y_train, X_val, y_val, _, _ = digits
    spec = get_classifier("knn")
    assert spec.score_grid is not None
    # train rows among the scored ones sit at distance 0 from a fit row: their vote is the exact match's
    X_score, y_score = np.vstack([X_val, X_train[:100]]), np.concatenate([y_val, y_train[:100]])
    accuracies = spec.score_grid(spec.grid, 0, 1, X_train, y_train, X_score, y_score)
    for params, accuracy in zip(spec.grid, accuracies):
        model = spec.build(params, 0, 1, X_train.shape).fit(X_train, y_train)
        assert accuracy == np.mean(model.predict(X_score) == y_score)


@pytest.mark.parametrize("name", ["logreg", "linear_svm"])
def test_warm_started_grid_walk_matches_cold_fits(digits, name):
    X_train, y_train, X_val, y_val, _, _ = digits
    spec = get_classifier(name)
    assert spec.warm_start_step
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


@pytest.fixture
def small_subsample(monkeypatch):
    """Subsample selection above 700 train rows: fit on 400, score on 300 (digits' train has 1078)."""
    monkeypatch.setattr(selection_module, "SUBSAMPLE_FIT_ROWS", 400)
    monkeypatch.setattr(selection_module, "SUBSAMPLE_SCORE_ROWS", 300)
    monkeypatch.setattr(selection_module, "SUBSAMPLE_ABOVE", 700)


def test_large_train_without_val_selects_on_a_stratified_subsample(digits, small_subsample):
    X_train, y_train, _, _, _, _ = digits
    folds = np.arange(len(y_train)) % 5
    spec = get_classifier("knn")
    selection = select_params(spec, X_train, y_train, folds=folds, seed=7)
    assert selection.method == "subsample" and (selection.fit_rows, selection.score_rows) == (400, 300)
    fit, score = selection_module.subsample_split(y_train, 7)
    assert len(fit) == 400 and len(score) == 300 and not set(fit) & set(score)
    # stratified: every class keeps its share of train, to within a row
    share = np.bincount(y_train) / len(y_train)
    assert np.all(np.abs(np.bincount(y_train[fit], minlength=10) - 400 * share) <= 1)
    assert np.all(np.abs(np.bincount(y_train[score], minlength=10) - 300 * share) <= 1)
    # the scores are plain fits of each candidate on the subsample
    for entry in selection.scores:
        model = spec.build(entry["params"], 7, 1, X_train[fit].shape).fit(X_train[fit], y_train[fit])
        assert entry["accuracy"] == pytest.approx(np.mean(model.predict(X_train[score]) == y_train[score]))


def test_subsample_is_deterministic_in_the_seed(digits, small_subsample):
    y_train = digits[1]
    first, again, other = (selection_module.subsample_split(y_train, seed) for seed in (1, 1, 2))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])
    assert selection_module.selection_splits(y_train, None, 1)[0] == "subsample"
    assert selection_module.selection_splits(y_train[:700], None, 1)[0] == "cv"


def test_subsample_fits_the_row_of_a_class_with_one(digits, small_subsample):
    y_train = digits[1]
    lonely = np.append(y_train, 10)  # an 11th class with one train image (an imbalanced folder, no val split)
    fit, score = selection_module.subsample_split(lonely, 3)  # StratifiedShuffleSplit refused it: ValueError
    assert len(y_train) in fit and len(fit) == 400 and len(score) == 300 and not set(fit) & set(score)
    assert select_params(get_classifier("knn"), digits[0][np.r_[np.arange(len(y_train)), 0]], lonely, seed=3).method \
        == "subsample"


def test_a_tie_goes_to_the_stronger_regularisation_for_knn_too():
    # three well-separated directions: every k scores 100%, and more neighbours smooth more
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    X = np.eye(3)[y] * 10 + rng.normal(scale=0.01, size=(120, 3))
    selection = select_params(get_classifier("knn"), X[::2], y[::2], X[1::2], y[1::2], seed=0)
    assert [s["accuracy"] for s in selection.scores] == [1.0, 1.0, 1.0] and selection.params == {"k": 20}


def test_subsample_of_too_few_rows_is_a_one_line_error(digits, small_subsample):
    with pytest.raises(ValueError, match="at least 700 train rows, got 699") as error:
        selection_module.subsample_split(digits[1][:699], 0)
    assert "\n" not in str(error.value)


def test_selection_records_the_rows_it_fitted_and_scored(digits):
    X_train, y_train, X_val, y_val, _, _ = digits
    spec = get_classifier("knn")
    on_val = select_params(spec, X_train, y_train, X_val, y_val)
    assert (on_val.fit_rows, on_val.score_rows) == (len(y_train), len(y_val))
    on_folds = select_params(spec, X_train, y_train, folds=np.arange(len(y_train)) % 5)
    assert on_folds.method == "cv" and on_folds.fit_rows + on_folds.score_rows == len(y_train)


def test_lightgbm_skips_pca_wider_than_the_data():
    spec = get_classifier("lightgbm")
    params = {"pca": 64, "n_estimators": 5, "learning_rate": 0.1, "num_leaves": 7}
    narrow = spec.build(params, 0, 1, (1000, 32))
    few_rows = spec.build(params, 0, 1, (40, 1280))
    wide = spec.build(params, 0, 1, (1000, 1280))
    assert "pca" not in narrow.named_steps and "pca" not in few_rows.named_steps
    assert wide.named_steps["pca"].n_components == 64


def test_lightgbm_lowers_min_child_samples_on_small_fits():
    # LightGBM's default of 20 rows per leaf leaves a fit of under ~40 rows without a single split
    spec = get_classifier("lightgbm")
    params = dict(spec.grid[0])
    assert [spec.used_params(params, (rows, 64))["min_child_samples"] for rows in (3, 30, 150, 200, 60000)] == [
        1, 3, 15, 20, 20]
    assert spec.build(params, 0, 1, (30, 64))[-1].min_child_samples == 3
    assert spec.build(params, 0, 1, (60000, 64))[-1].min_child_samples == 20


def test_adding_a_classifier_is_one_registry_entry(digits, monkeypatch):
    monkeypatch.setattr(registry.CLASSIFIERS, "_entries", dict(registry.CLASSIFIERS._entries))
    spec = registry.register(ClassifierSpec(
        name="ridge", description="ridge classifier",
        build=lambda params, seed, n_jobs, shape: RidgeClassifier(alpha=params["alpha"]),
        grid=({"alpha": 1.0}, {"alpha": 10.0}),
    ))
    assert get_classifier("ridge") is spec and "ridge" in classifier_names()
    with pytest.raises(ValueError, match="already registered"):
        registry.register(spec)
    X_train, y_train, X_val, y_val, _, _ = digits
    selection = select_params(spec, X_train, y_train, X_val, y_val)
    accuracies = [np.mean(RidgeClassifier(alpha=p["alpha"]).fit(X_train, y_train).predict(X_val) == y_val)
                  for p in spec.grid]
    assert [s["accuracy"] for s in selection.scores] == pytest.approx(accuracies)
    assert selection.params == spec.grid[int(np.argmax(accuracies))]
