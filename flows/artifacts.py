"""Prefect artifact keys: stable across runs, so the UI shows each one's history."""

from __future__ import annotations

import re

from featurestore.evaluation.history import fitted_per_class


def artifact_key(*parts: str) -> str:
    """A key from ``parts`` in the alphabet Prefect allows (lowercase letters, digits, dashes; 100 chars)."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


def run_kind_parts(document: dict) -> tuple[str, ...]:
    """Key parts that keep the artifacts of a learning-curve run (``train_per_class`` N) apart from the
    full-data ones, e.g. ``("tpc10",)`` for ``evaluate-<dataset>-tpc10``: one key's history then holds
    comparable runs only. ``()`` for a run on every train row, and for one whose N capped no class
    (a full fit, filed under "all" by ``report --history`` too)."""
    parameters = document["parameters"]
    per_class = parameters.get("train_per_class")
    capped = any(fitted_per_class(parameters, record) for record in document["results"])
    return (f"tpc{per_class}",) if per_class and capped else ()
