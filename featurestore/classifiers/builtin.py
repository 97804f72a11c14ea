"""The built-in classifiers: logistic regression, linear SVM, LightGBM and cosine kNN.

Grids are ordered from the strongest to the weakest regularisation so that classifiers
marked ``warm_start`` can reuse the previous solution while walking the grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightgbm import LGBMClassifier
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

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
    """Standardised one-vs-rest linear SVM; liblinear's dual solver unless samples outnumber features."""
    return make_pipeline(
        StandardScaler(),
        LinearSVC(C=params["C"], dual="auto", max_iter=2000, random_state=seed),
    )


def build_lightgbm(params: Mapping[str, Any], seed: int, n_jobs: int, shape: tuple[int, int]) -> Pipeline:
    """Gradient-boosted trees, optionally on a PCA projection (``pca``: components or None).

    The projection is skipped when the training data has no more rows or columns than ``pca``.
    """
    steps: list[Any] = []
    if params.get("pca") and params["pca"] < min(shape):
        steps.append(PCA(n_components=params["pca"], random_state=seed))
    steps.append(
        LGBMClassifier(
            n_estimators=params["n_estimators"],
            learning_rate=params["learning_rate"],
            num_leaves=params["num_leaves"],
            # coarser histograms and half the columns per tree keep 60k-row fits within minutes
            max_bin=63,
            colsample_bytree=0.5,
            random_state=seed,
            n_jobs=n_jobs,
            verbose=-1,
        )
    )
    return make_pipeline(*steps)


def build_knn(params: Mapping[str, Any], seed: int, n_jobs: int, shape: tuple[int, int]) -> Pipeline:
    """k nearest neighbours under cosine distance, votes weighted by closeness."""
    return make_pipeline(
        KNeighborsClassifier(
            n_neighbors=params["k"],
            metric="cosine",
            algorithm="brute",
            weights="distance",
            n_jobs=n_jobs,
        )
    )


register(
    ClassifierSpec(
        name="logreg",
        description="standardised logistic regression, C chosen on val / CV",
        build=build_logreg,
        grid=tuple({"C": c} for c in LOGREG_C),
        has_proba=True,
        warm_start_step="logisticregression",
    )
)
register(
    ClassifierSpec(
        name="linear_svm",
        description="standardised linear SVM (one-vs-rest), C chosen on val / CV",
        build=build_linear_svm,
        grid=tuple({"C": c} for c in (1e-4, 1e-3, 1e-2)),
        has_proba=False,
    )
)
register(
    ClassifierSpec(
        name="lightgbm",
        description="LightGBM on a PCA projection of the features",
        build=build_lightgbm,
        grid=tuple(
            {"pca": pca, "n_estimators": 200, "learning_rate": 0.1, "num_leaves": 31}
            for pca in (32, 64)
        ),
        has_proba=True,
    )
)
register(
    ClassifierSpec(
        name="knn",
        description="k nearest neighbours, cosine distance, k chosen on val / CV",
        build=build_knn,
        grid=tuple({"k": k} for k in (5, 10, 20)),
        has_proba=True,
    )
)
