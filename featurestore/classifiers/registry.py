"""The classifier registry: one entry per classifier the evaluate flow can fan out.

An entry says how to build a scikit-learn estimator from hyper-parameters, which
hyper-parameters to try, and whether the estimator gives class probabilities.
Adding a classifier is one ``register(ClassifierSpec(...))`` call plus a test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin

from featurestore.registry import Registry

#: ``build(params, seed, n_jobs, shape)`` returns an unfitted scikit-learn classifier for
#: training data of ``shape`` (rows, columns), using ``n_jobs`` threads.
Builder = Callable[[Mapping[str, Any], int, int, tuple[int, int]], ClassifierMixin]

#: ``score_grid(grid, seed, n_jobs, X_fit, y_fit, X_score, y_score)`` returns the accuracy on
#: ``(X_score, y_score)`` of every candidate in ``grid`` fitted on ``(X_fit, y_fit)``, sharing work
#: between candidates; it must give what fitting each candidate on its own gives
GridScorer = Callable[
    [tuple[Mapping[str, Any], ...], int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray], list[float]
]

#: ``params_used(params, shape)`` returns the hyper-parameters ``build`` actually applies to
#: training data of ``shape`` (rows, columns)
ParamsUsed = Callable[[Mapping[str, Any], tuple[int, int]], dict[str, Any]]


@dataclass(frozen=True)
class ClassifierSpec:
    """How to build, tune and score one kind of classifier."""

    name: str
    description: str
    build: Builder
    #: candidate hyper-parameters; the first is the default when there is nothing to select on
    grid: tuple[Mapping[str, Any], ...]
    #: pipeline step whose ``warm_start`` may be switched on while walking the grid; the grid's
    #: keys must then be that step's parameter names
    warm_start_step: str | None = None
    #: scores the whole grid at once (see ``GridScorer``) instead of one fit per candidate
    score_grid: GridScorer | None = None
    #: where ``build`` adapts a candidate to the data (kNN clips k to the rows), what it applies;
    #: records show these, so a report never names a value the fit did not use
    params_used: ParamsUsed | None = None

    def __post_init__(self) -> None:
        if not self.grid:
            raise ValueError(f"classifier {self.name!r} needs at least one hyper-parameter set")

    def used_params(self, params: Mapping[str, Any], shape: tuple[int, int]) -> dict[str, Any]:
        """The hyper-parameters ``build`` applies to training data of ``shape``: ``params`` unless
        the spec's ``params_used`` says it adapts them."""
        return dict(params) if self.params_used is None else self.params_used(params, shape)


CLASSIFIERS: Registry[ClassifierSpec] = Registry("classifier")


def register(spec: ClassifierSpec) -> ClassifierSpec:
    """Add ``spec`` to the registry (a name may be registered once) and return it."""
    return CLASSIFIERS.register(spec.name, spec)


def get_classifier(name: str) -> ClassifierSpec:
    """Return the registered classifier ``name`` or raise ``InvalidName`` listing the known ones."""
    return CLASSIFIERS.get(name)


def classifier_names() -> list[str]:
    """Names of all registered classifiers, in registration order."""
    return CLASSIFIERS.names()
