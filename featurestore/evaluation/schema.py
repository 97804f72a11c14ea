"""The JSON schema of ``results.json``; every run directory carries a copy as ``results.schema.json``.

Bump ``SCHEMA_VERSION`` on any change that removes or renames a field; adding an optional
field keeps the version.
"""

from __future__ import annotations

from typing import Any

import jsonschema

SCHEMA_VERSION = 1

_NUMBER_OR_NULL = {"type": ["number", "null"]}

RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "dataset", "model", "classifier", "kind", "leak_free", "accuracy", "top5_accuracy",
        "macro_f1", "per_class_accuracy", "confusion_matrix", "class_names", "fit_seconds",
        "predict_seconds", "params", "n_fit", "n_test", "store_fingerprints",
        "gain_over_best_single", "best_single",
    ],
    "properties": {
        "dataset": {"type": "string"},
        "model": {"type": "string", "description": "backbone, or backbones joined by '+' for an ensemble"},
        "classifier": {"type": "string"},
        "kind": {"enum": ["single", "ensemble"]},
        "leak_free": {"type": "boolean"},
        "accuracy": {"type": "number", "minimum": 0, "maximum": 1},
        "top5_accuracy": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "macro_f1": {"type": "number", "minimum": 0, "maximum": 1},
        "per_class_accuracy": {"type": "object", "additionalProperties": _NUMBER_OR_NULL},
        "confusion_matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}}},
        "class_names": {"type": "array", "items": {"type": "string"}},
        "fit_seconds": {"type": "number", "minimum": 0},
        "predict_seconds": {"type": "number", "minimum": 0},
        "params": {"type": "object"},
        "selection": {"type": "object"},
        "base_accuracy": {"type": "object", "additionalProperties": {"type": "number"}},
        "n_fit": {"type": "integer", "minimum": 1},
        "n_test": {"type": "integer", "minimum": 1},
        "train_per_class": {
            "type": ["integer", "null"], "minimum": 1,
            "description": "the per-class cap the fit rows were drawn with; null for a full fit, also where the "
                           "run's train_per_class capped no class of this dataset (runs before it: absent)",
        },
        "n_failed_rows": {"type": "integer", "minimum": 0},
        "store_fingerprints": {"type": "object", "additionalProperties": {"type": "string"}},
        "gain_over_best_single": {**_NUMBER_OR_NULL, "description": "accuracy points over best_single"},
        "best_single": {"type": ["string", "null"], "description": "'<model> + <classifier>'"},
        "members": {"type": "array", "items": {"type": "string"},
                    "description": "an ensemble's backbones, in order (runs before it: absent)"},
        "no_gain_reason": {"type": ["string", "null"],
                           "description": "why an ensemble has no gain_over_best_single (its singles were scored on "
                                          "other rows); null where it has one"},
    },
}

RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "featurestore evaluate results",
    "type": "object",
    "required": ["schema_version", "run_id", "created_at", "parameters", "summary", "results", "skipped"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "run_id": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "parameters": {"type": "object"},
        "summary": {
            "type": "object",
            "description": "one line per dataset, e.g. 'best: stacking_cv 91.2% (+1.1 over m + logreg)'",
            "additionalProperties": {"type": "string"},
        },
        "results": {"type": "array", "items": RESULT_SCHEMA},
        "skipped": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["dataset", "model", "reason"],
                "properties": {
                    "dataset": {"type": "string"},
                    "model": {"type": "string"},
                    "classifier": {"type": ["string", "null"]},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}


def validate_results(document: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``document`` does not follow ``RESULTS_SCHEMA``."""
    jsonschema.validate(document, RESULTS_SCHEMA)
