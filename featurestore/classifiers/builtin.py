"""The built-in classifiers: logistic regression, linear SVM, LightGBM and cosine kNN.

Grids are ordered from the strongest to the weakest regularisation so that classifiers
marked ``warm_start`` can reuse the previous solution while walking the grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from lightgbm import LGBMClassifier
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from featurestore.classifiers.dense_svm import DenseLinearSVC
from featurestore.classifiers.registry import ClassifierSpec, register

# Backbone features are standardised before linear models; the useful C then sits far below 1,
# so the grid spans five decades in half-decade steps.
LOGREG_C = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 1.0)


def build_logreg(params: Mapping[str, Any], seed: int, n_jobs: int, shape: tuple[int, int]) -> Pipeline:
    """Standardised multinomial logistic regression (lbfgs)."""
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=params["C"], max_iter=1000, random_state=seed),
    )


def build_linear_svm(params: Mapping[str, Any], seed: int, n_jobs: int, shape: tuple[int, int]) -> Pipeline:
    """Standardised one-vs-rest linear SVM: ``LinearSVC``'s objective, solved by L-BFGS on dense
    matrix products (liblinear took minutes per fit on 60k backbone rows; see ``dense_svm``)."""
    return make_pipeline(StandardScaler(), DenseLinearSVC(C=params["C"]))


#: LightGBM's own default of the fewest rows a leaf may hold
LIGHTGBM_MIN_CHILD_SAMPLES = 20
#: on a small fit a leaf may hold as few as this share of the rows (see ``lightgbm_params_used``)
LIGHTGBM_ROWS_PER_CHILD_SAMPLE = 10


def lightgbm_params_used(params: Mapping[str, Any], shape: tuple[int, int]) -> dict[str, Any]:
    """``params`` with ``pca`` None where the data has no more rows or columns than it (no projection
    then), and ``min_child_samples`` lowered to a tenth of the rows (at least 1) where that is smaller.

    A split needs ``min_child_samples`` rows on each side: with LightGBM's default of 20, a fit on
    fewer than about 40 rows (a learning-curve point, a small photo folder, a CV fold of one) grows
    no tree at all and predicts one class, i.e. scores exactly chance. A tenth of the rows keeps the
    default from 200 rows up; on digits it was within 2 points of the best of 1, 2, 5, 10 and 20
    from 20 to 400 rows, where 20 gave chance below 50 rows.
    """
    pca = params.get("pca")
    min_child = params.get("min_child_samples", LIGHTGBM_MIN_CHILD_SAMPLES)
    return {**params, "pca": pca if pca and pca < min(shape) else None,
            "min_child_samples": max(1, min(min_child, shape[0] // LIGHTGBM_ROWS_PER_CHILD_SAMPLE))}


def build_lightgbm(params: Mapping[str, Any], seed: int, n_jobs: int, shape: tuple[int, int]) -> Pipeline:
    """Gradient-boosted trees, optionally on a PCA projection (``pca``: components or None).

    The projection is skipped when the training data has no more rows or columns than ``pca``, and
    ``min_child_samples`` is lowered on small training data (see ``lightgbm_params_used``).
    """
    steps: list[Any] = []
    used = lightgbm_params_used(params, shape)
    if used["pca"]:
        steps.append(PCA(n_components=used["pca"], random_state=seed))
    steps.append(
        LGBMClassifier(
            n_estimators=params["n_estimators"],
            learning_rate=params["learning_rate"],
            num_leaves=params["num_leaves"],
            min_child_samples=used["min_child_samples"],
            # coarser histograms and half the columns per tree keep 60k-row fits within minutes
            max_bin=63,
            colsample_bytree=0.5,
            random_state=seed,
            n_jobs=n_jobs,
            verbose=-1,
        )
    )
    return make_pipeline(*steps)


def knn_params_used(params: Mapping[str, Any], shape: tuple[int, int]) -> dict[str, Any]:
    """``params`` with ``k`` clipped to the training rows: a small split (or CV fold) has fewer rows
    than the grid's largest ``k``, and then every row is a neighbour."""
    return {**params, "k": min(params["k"], shape[0])}


def build_knn(params: Mapping[str, Any], seed: int, n_jobs: int, shape: tuple[int, int]) -> Pipeline:
    """k nearest neighbours under cosine distance, votes weighted by closeness (``k``: see ``knn_params_used``)."""
    return make_pipeline(
        KNeighborsClassifier(
            n_neighbors=knn_params_used(params, shape)["k"],
            metric="cosine",
            algorithm="brute",
            weights="distance",
            n_jobs=n_jobs,
        )
    )


def knn_grid_accuracies(
    grid: tuple[Mapping[str, Any], ...],
    seed: int,
    n_jobs: int,
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    X_score: np.ndarray,
    y_score: np.ndarray,
) -> list[float]:
    """Accuracy of every ``k`` in ``grid`` from a single neighbour search for the largest ``k``.

    The search dominates a kNN fit-and-predict and the k nearest rows are the first k of the
    largest-k list, so one search serves the whole grid. Votes are weighted and tied as in
    ``KNeighborsClassifier.predict`` (weights 1/distance; exact matches alone when a row has any;
    ties to the lowest class). A ``k`` above the rows of ``X_fit`` is clipped as ``build_knn`` clips it.
    """
    largest = build_knn(max(grid, key=lambda params: params["k"]), seed, n_jobs, X_fit.shape)[-1]
    distances, neighbours = largest.fit(X_fit, y_fit).kneighbors(X_score)
    neighbour_classes = np.searchsorted(largest.classes_, y_fit)[neighbours]
    accuracies = []
    for params in grid:
        k = min(params["k"], distances.shape[1])
        with np.errstate(divide="ignore"):
            weights = 1.0 / distances[:, :k]
        exact = np.isinf(weights)
        exact_rows = exact.any(axis=1)
        weights[exact_rows] = exact[exact_rows]
        votes = np.stack([np.sum(weights * (neighbour_classes[:, :k] == c), axis=1)
                          for c in range(len(largest.classes_))], axis=1)
        accuracies.append(float(np.mean(largest.classes_[np.argmax(votes, axis=1)] == y_score)))
    return accuracies


register(
    ClassifierSpec(
        name="logreg",
        description="standardised logistic regression, C chosen on val / CV",
        build=build_logreg,
        grid=tuple({"C": c} for c in LOGREG_C),
        warm_start_step="logisticregression",
    )
)
register(
    ClassifierSpec(
        name="linear_svm",
        description="standardised linear SVM (one-vs-rest), C chosen on val / CV",
        build=build_linear_svm,
        grid=tuple({"C": c} for c in (1e-4, 1e-3, 1e-2)),
        warm_start_step="denselinearsvc",
    )
)
register(
    ClassifierSpec(
        name="lightgbm",
        description="LightGBM on a PCA projection of the features",
        build=build_lightgbm,
        grid=tuple(
            {"pca": pca, "n_estimators": 200, "learning_rate": 0.1, "num_leaves": 31,
             "min_child_samples": LIGHTGBM_MIN_CHILD_SAMPLES}
            for pca in (32, 64)
        ),
        params_used=lightgbm_params_used,
    )
)
register(
    ClassifierSpec(
        name="knn",
        description="k nearest neighbours, cosine distance, k chosen on val / CV",
        build=build_knn,
        grid=tuple({"k": k} for k in (20, 10, 5)),  # more neighbours smooth more: the stronger first
        score_grid=knn_grid_accuracies,
        params_used=knn_params_used,
    )
)
