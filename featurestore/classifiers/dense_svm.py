"""A linear SVM for dense features: ``LinearSVC``'s default objective, solved with L-BFGS.

scikit-learn's ``LinearSVC`` runs liblinear: one thread, one class at a time, and dense rows
copied into liblinear's sparse format first. On backbone features (tens of thousands of dense
rows, ~1000 columns) a single fit takes minutes. ``DenseLinearSVC`` minimises the same
one-vs-rest problem for all classes at once with ``scipy.optimize.minimize(method="L-BFGS-B")``;
each objective evaluation is two matrix products, which BLAS runs fast (and threaded).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data


class DenseLinearSVC(ClassifierMixin, BaseEstimator):
    """One-vs-rest linear SVM, L2-regularised squared hinge loss, for dense data.

    For every class ``k`` (a single one for two classes, as ``LinearSVC``) it minimises

        0.5 * (||w_k||^2 + b_k^2) + C * sum_i max(0, 1 - y_ik * (w_k . x_i + b_k))^2

    with ``y_ik`` = +1 for rows of class ``k`` and -1 otherwise. This is ``LinearSVC``'s
    default problem (``loss="squared_hinge"``, ``penalty="l2"``, ``intercept_scaling=1``):
    liblinear fits the intercept as the weight of a constant feature of value 1, so the
    intercept is regularised like any other weight, and it is here too. The classes' problems
    are independent; they are solved together because one matrix product serves them all.

    Parameters: ``C`` (inverse regularisation strength, > 0), ``tol`` (stop once the largest
    gradient component is below ``tol`` times its value at zero weights, like liblinear's primal
    solver), ``max_iter`` (L-BFGS iterations), ``warm_start`` (start from the previous fit's
    weights when refitting on data of the same width and classes, e.g. while walking a grid of
    C values). There is nothing random, so no seed.
    Matrix products run in the input's float precision (float32 features stay float32); the
    objective and the solver's state are float64.
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-4, max_iter: int = 1000, warm_start: bool = False):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.warm_start = warm_start

    def fit(self, X, y) -> DenseLinearSVC:
        """Fit on dense ``X`` (rows x features) and labels ``y``; return ``self``."""
        if not self.C > 0:
            raise ValueError(f"DenseLinearSVC needs C > 0, got {self.C!r}")
        previous = self._previous_solution()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], order="C")
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"DenseLinearSVC needs at least two classes in y, got {len(classes)}")
        if previous is not None and not np.array_equal(previous[0], classes):
            previous = None
        self.classes_ = classes
        # two classes give one problem, class 1 positive, as in LinearSVC
        positive = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        signs = np.where(y[:, None] == positive[None, :], 1.0, -1.0)
        n_features, n_problems = X.shape[1], len(positive)

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            weights = theta[: n_features * n_problems].reshape(n_features, n_problems)
            bias = theta[n_features * n_problems :]
            scores = (X @ weights.astype(X.dtype)).astype(np.float64) + bias
            violation = np.maximum(0.0, 1.0 - signs * scores)
            value = 0.5 * theta @ theta + self.C * np.sum(violation * violation)
            d_scores = -2.0 * self.C * signs * violation
            grad_w = weights + (X.T @ d_scores.astype(X.dtype)).astype(np.float64)
            grad_b = bias + d_scores.sum(axis=0)
            return value, np.concatenate([grad_w.ravel(), grad_b])

        zeros = np.zeros((n_features + 1) * n_problems)
        first_gradient = np.abs(objective(zeros)[1]).max()
        start = zeros
        if previous is not None and previous[1].size == zeros.size:
            start = previous[1]
        result = minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            # ftol=0: only the gradient criterion (or max_iter) ends the walk
            options={"maxiter": self.max_iter, "gtol": self.tol * first_gradient, "ftol": 0.0},
        )
        self.coef_ = result.x[: n_features * n_problems].reshape(n_features, n_problems).T.copy()
        self.intercept_ = result.x[n_features * n_problems :].copy()
        self.n_iter_ = int(result.nit)
        self.objective_ = float(result.fun)
        return self

    def _previous_solution(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(classes_, weights as the solver's flat vector)`` of the last fit, if warm-starting from it."""
        if not self.warm_start or not hasattr(self, "coef_"):
            return None
        return self.classes_, np.concatenate([self.coef_.T.ravel(), self.intercept_])

    def decision_function(self, X) -> np.ndarray:
        """Signed distances to each class's hyperplane (one column for two classes, raveled)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        scores = X @ self.coef_.T.astype(X.dtype) + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X) -> np.ndarray:
        """The class with the largest decision value (the positive one above 0 for two classes)."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]
