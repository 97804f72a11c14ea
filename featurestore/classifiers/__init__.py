"""Registry of cheap classifiers run on top of the feature stores.

>>> from featurestore.classifiers import get_classifier, select_params, fit_classifier
>>> spec = get_classifier("logreg")
"""

from featurestore.classifiers import builtin as _builtin  # noqa: F401  (registers the built-ins)
from featurestore.classifiers.registry import (
    ClassifierSpec,
    classifier_names,
    get_classifier,
    register,
)
from featurestore.classifiers.selection import Selection, fit_classifier, select_params

__all__ = [
    "ClassifierSpec",
    "Selection",
    "classifier_names",
    "fit_classifier",
    "get_classifier",
    "register",
    "select_params",
]
