"""Prefect artifact keys: stable across runs, so the UI shows each one's history."""

from __future__ import annotations

import re


def artifact_key(*parts: str) -> str:
    """A key from ``parts`` in the alphabet Prefect allows (lowercase letters, digits, dashes; 100 chars)."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


def run_kind_parts(parameters: dict) -> tuple[str, ...]:
    """Key parts that keep the artifacts of a learning-curve run (``train_per_class`` N) apart from the
    full-data ones, e.g. ``("tpc10",)`` for ``evaluate-<dataset>-tpc10``: one key's history then holds
    comparable runs only. ``()`` for a run on every train row."""
    per_class = parameters.get("train_per_class")
    return (f"tpc{per_class}",) if per_class else ()
