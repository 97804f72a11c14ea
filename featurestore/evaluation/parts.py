"""Per-task result files: each evaluation task saves its records under ``<run>/parts/`` and
hands on only the path, so no result travels between workers in memory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from featurestore.evaluation.runs import PARTS
from featurestore.files import write_text_aside


def part_path(run_dir: str | os.PathLike[str], dataset: str, model: str, classifier: str) -> Path:
    """Where the records of (dataset, model, classifier) go inside the run directory."""
    return Path(run_dir) / PARTS / f"{dataset}__{model}__{classifier}.json"


def save_records(path: Path, records: list[dict[str, Any]]) -> str:
    """Write ``records`` to ``path`` atomically and return the path as a string.

    The run directory must exist: a task that outlives its discarded run (failed or stopped)
    must not create it again.
    """
    path.parent.mkdir(exist_ok=True)
    write_text_aside(path, json.dumps(records))
    return str(path)


def load_records(paths: list[str]) -> list[dict[str, Any]]:
    """All records of the given part files, in order."""
    return [record for path in paths for record in json.loads(Path(path).read_text(encoding="utf-8"))]
