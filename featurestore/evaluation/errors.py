"""Errors of the evaluate step: data that cannot give a meaningful accuracy."""

from __future__ import annotations

from featurestore.errors import FeatureStoreError


class EvaluationError(FeatureStoreError, ValueError):
    """The stores can be read but cannot be evaluated as asked."""


class SingleClassDataset(EvaluationError):
    """The dataset's train rows hold fewer than two classes."""


class ClassMissingFromTrain(EvaluationError):
    """A class has no train rows, so no classifier can learn it."""


class NoTestRows(EvaluationError):
    """The dataset's test split is empty, or every test row failed at extraction."""


class TooFewRowsToStack(EvaluationError):
    """A class has a single train+val row, so stacking's cross-validation cannot learn it in every fold."""


class StoresDisagree(EvaluationError):
    """Stores to be combined hold different rows (ids, labels, split or folds)."""


class NothingToEvaluate(EvaluationError):
    """A requested dataset or model has no store, or no requested store can be evaluated."""
