"""Prefect artifact keys: stable across runs, so the UI shows each one's history."""

from __future__ import annotations

import hashlib
import re

from featurestore.evaluation.history import fitted_per_class

# Key parts of the flows' own (the run-wide report, a summary, a learning-curve point): a dataset
# named like one would share its key's history.
_OWN_PARTS = re.compile(r"^report$|-summary$|-tpc[0-9]+$")
# Room kept for the flow's name and the parts after a dataset's (Prefect allows 100 characters).
_LONGEST_NAME = 60


def artifact_key(*parts: str) -> str:
    """A key from ``parts`` in the alphabet Prefect allows (lowercase letters, digits, dashes; 100 chars)."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


def name_part(name: str) -> str:
    """A dataset's name as an artifact key part: the name itself where it is one (``fashion-mnist``),
    else its closest key with a short hash of the name, so that no two names share a key's history
    (``fashion_mnist`` and ``Fashion.MNIST`` would both be ``fashion-mnist``; a dataset ``report``
    would be the run-wide report) and a long name leaves room for the parts after it."""
    slug = artifact_key(name)
    if slug == name and len(name) <= _LONGEST_NAME and not _OWN_PARTS.search(name):
        return name
    return f"{slug[:_LONGEST_NAME - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def run_kind_parts(document: dict) -> tuple[str, ...]:
    """Key parts that keep the artifacts of a learning-curve run (``train_per_class`` N) apart from the
    full-data ones, e.g. ``("tpc10",)`` for ``evaluate-<dataset>-tpc10``: one key's history then holds
    comparable runs only. ``()`` for a run on every train row, and for one whose N capped no class
    (a full fit, filed under "all" by ``report --history`` too)."""
    parameters = document["parameters"]
    per_class = parameters.get("train_per_class")
    capped = any(fitted_per_class(parameters, record) for record in document["results"])
    return (f"tpc{per_class}",) if per_class and capped else ()
