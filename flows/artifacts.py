"""Prefect artifact keys: stable across runs, so the UI shows each one's history."""

from __future__ import annotations

import re


def artifact_key(*parts: str) -> str:
    """A key from ``parts`` in the alphabet Prefect allows (lowercase letters, digits, dashes; 100 chars)."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]
