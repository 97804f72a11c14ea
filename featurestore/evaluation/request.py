"""The checks of an evaluate request that need no store, shared by ``featurestore evaluate`` and the
evaluate flow (a deployment calls the flow directly, so it checks again)."""

from __future__ import annotations

from collections.abc import Sequence

from featurestore.classifiers import classifier_names, get_classifier
from featurestore.evaluation.data import check_train_per_class


def check_request(classifiers: Sequence[str] | None = None, train_per_class: int | None = None) -> list[str]:
    """Check an evaluate request's classifier names and ``train_per_class``, each problem in one line,
    before a run starts; return the classifiers to fit (default: every registered one)."""
    names = list(classifiers or classifier_names())
    for name in names:
        get_classifier(name)
    check_train_per_class(train_per_class)
    return names
