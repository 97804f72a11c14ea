"""DenseLinearSVC against scikit-learn's LinearSVC (liblinear) on standardised digits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from featurestore.classifiers.dense_svm import DenseLinearSVC
from featurestore.evaluation.threads import limit_native_threads

limit_native_threads(1)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), y_train, scaler.transform(X_test), y_test


def squared_hinge_objective(coef, intercept, C, X, y, classes):
    """LinearSVC's one-vs-rest primal objective, intercept regularised (intercept_scaling=1)."""
    positive = classes[1:] if len(classes) == 2 else classes
    total = 0.0
    for k, label in enumerate(positive):
        sign = np.where(y == label, 1.0, -1.0)
        violation = np.maximum(0.0, 1.0 - sign * (X @ coef[k] + intercept[k]))
        total += 0.5 * (coef[k] @ coef[k] + intercept[k] ** 2) + C * violation @ violation
    return total


@pytest.mark.parametrize("C", [1e-3, 1e-2, 0.1, 1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_linear_svc_objective_and_predictions(digits, C, dtype):
    X_train, y_train, X_test, y_test = digits
    reference = LinearSVC(C=C, dual=False, tol=1e-8, max_iter=100_000).fit(X_train, y_train)
    dense = DenseLinearSVC(C=C).fit(X_train.astype(dtype), y_train)
    assert dense.coef_.shape == reference.coef_.shape and dense.intercept_.shape == reference.intercept_.shape
    assert list(dense.classes_) == list(reference.classes_)
    best = squared_hinge_objective(reference.coef_, reference.intercept_, C, X_train, y_train, reference.classes_)
    ours = squared_hinge_objective(dense.coef_, dense.intercept_, C, X_train, y_train, dense.classes_)
    # the optimum is unique (strictly convex); L-BFGS stops a little above it
    assert best <= ours * (1 + 1e-9) and ours <= best * (1 + 5e-4)
    assert dense.objective_ == pytest.approx(ours, rel=1e-5)
    assert np.mean(dense.predict(X_test.astype(dtype)) == reference.predict(X_test)) >= 0.995


def test_two_classes_give_one_hyperplane_like_linear_svc(digits):
    X_train, y_train, X_test, _ = digits
    labels = np.where(y_train > 4, "high", "low")
    reference = LinearSVC(C=0.1, dual=False, tol=1e-8).fit(X_train, labels)
    dense = DenseLinearSVC(C=0.1).fit(X_train, labels)
    assert dense.coef_.shape == (1, X_train.shape[1]) and dense.decision_function(X_test).shape == (len(X_test),)
    assert np.mean(dense.predict(X_test) == reference.predict(X_test)) >= 0.995
    # decision values agree to the default tolerance (median gap ~3e-4), and closely with a tight one
    assert np.median(np.abs(dense.decision_function(X_test) - reference.decision_function(X_test))) < 0.01
    tight = DenseLinearSVC(C=0.1, tol=1e-6).fit(X_train, labels)
    assert np.allclose(tight.decision_function(X_test), reference.decision_function(X_test), atol=0.005)


def test_is_a_scikit_learn_classifier(digits):
    X_train, y_train, X_test, y_test = digits
    model = clone(DenseLinearSVC(C=0.01, max_iter=500))
    assert model.get_params() == {"C": 0.01, "tol": 1e-4, "max_iter": 500, "warm_start": False}
    assert model.fit(X_train, y_train).score(X_test, y_test) > 0.93
    assert model.n_features_in_ == X_train.shape[1] and model.n_iter_ <= 500


def test_warm_start_reaches_the_same_optimum_in_fewer_steps(digits):
    X_train, y_train, _, _ = digits
    cold = DenseLinearSVC(C=0.1).fit(X_train, y_train)
    warm = DenseLinearSVC(C=0.01, warm_start=True).fit(X_train, y_train).set_params(C=0.1).fit(X_train, y_train)
    assert warm.objective_ == pytest.approx(cold.objective_, rel=1e-4) and warm.n_iter_ < cold.n_iter_
    # other classes start from zero again
    three = warm.fit(X_train[y_train < 3], y_train[y_train < 3])
    assert three.coef_.shape == (3, X_train.shape[1])
    assert three.objective_ == pytest.approx(DenseLinearSVC(C=0.1).fit(X_train[y_train < 3], y_train[y_train < 3]).objective_, rel=1e-4)


@pytest.mark.parametrize(
    ("model", "labels", "message"),
    [
        (DenseLinearSVC(C=0.0), None, "C > 0, got 0.0"),
        (DenseLinearSVC(), "one", "at least two classes in y, got 1"),
    ],
)
def test_bad_input_is_a_one_line_error(digits, model, labels, message):
    X_train, y_train, _, _ = digits
    y = y_train if labels is None else np.zeros(len(y_train))
    with pytest.raises(ValueError, match=message) as error:
        model.fit(X_train, y)
    assert "\n" not in str(error.value)
