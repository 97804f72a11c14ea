"""Test-set metrics of one fitted classifier, as plain JSON-ready numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, top_k_accuracy_score

TOP_K = 5


def class_scores(estimator: Any, X: np.ndarray, n_classes: int) -> np.ndarray | None:
    """Per-class probabilities if the estimator has them, else ``None``: one column per label
    ``0..n_classes-1``, zero for a label absent from the rows it was fitted on."""
    if not hasattr(estimator, "predict_proba"):
        return None
    try:
        scores = estimator.predict_proba(X)
    except AttributeError:  # pipelines expose the method even when their last step lacks it
        return None
    if scores.shape[1] == n_classes:
        return scores
    seen = getattr(estimator, "classes_", None)
    if seen is None:
        return None
    full = np.zeros((len(scores), n_classes), dtype=scores.dtype)
    full[:, np.asarray(seen, dtype=np.int64)] = scores
    return full


def compute_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    scores: np.ndarray | None,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Accuracy, top-5 accuracy (when ``scores`` exist and there are more than 5 classes),
    macro-F1, per-class accuracy and the confusion matrix (rows: true, columns: predicted).

    Macro-F1 averages over the classes present in ``y_true``: a class without test rows has no
    F1 to measure, and counting it as 0 would pull a perfect answer down.
    """
    labels = np.arange(len(class_names))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    support = matrix.sum(axis=1)
    per_class = {
        name: (float(matrix[i, i] / support[i]) if support[i] else None)
        for i, name in enumerate(class_names)
    }
    top5 = None
    if scores is not None and len(class_names) > TOP_K:
        top5 = float(top_k_accuracy_score(y_true, scores, k=TOP_K, labels=labels))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "top5_accuracy": top5,
        "macro_f1": float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)),
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
    }
