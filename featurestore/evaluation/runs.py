"""The layout of an evaluation run's directory, ``<root>/runs/<run id>/``: where its files are, how
its id is made and read back, and when it counts as finished.

A run id is the UTC time the run started, to the microsecond, then a random part
(``20261123T221036.598603Z-6fb392``): ids sort in the order the runs started, and simultaneous runs
stay apart. ``results.json`` is written last, so its presence marks a finished run; the tasks'
records wait under ``parts/`` until then.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from featurestore.paths import runs_dir

#: the run's results document; written last, it marks the run finished
RESULTS_FILE = "results.json"
#: the run's human-readable report
REPORT_FILE = "report.md"
#: the folder of the tasks' record files (``featurestore.evaluation.parts``)
PARTS = "parts"
#: the start-time part of a run id, before the ``-<random>`` part
_STARTED_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def run_path(run_id: str, root=None) -> Path:
    """The directory of run ``run_id`` under ``root``."""
    return runs_dir(root) / run_id


def new_run_dir(root=None) -> Path:
    """Create the directory of a new run, named by a new run id, and return it."""
    path = run_path(f"{datetime.now(UTC):{_STARTED_FORMAT}}-{secrets.token_hex(3)}", root)
    path.mkdir(parents=True)
    return path


def run_started(run_id: str) -> datetime | None:
    """When run ``run_id`` started (UTC), or ``None`` for an id ``new_run_dir`` did not make."""
    try:
        return datetime.strptime(run_id.split("-", 1)[0], _STARTED_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def results_path(run_dir: str | os.PathLike[str]) -> Path:
    """The run's ``results.json``."""
    return Path(run_dir) / RESULTS_FILE


def report_path(run_dir: str | os.PathLike[str]) -> Path:
    """The run's ``report.md``."""
    return Path(run_dir) / REPORT_FILE


def read_results(run_dir: str | os.PathLike[str]) -> Any:
    """The parsed ``results.json`` of the run in ``run_dir``, unchecked (``history`` checks it)."""
    return json.loads(results_path(run_dir).read_text(encoding="utf-8"))


def discard_unfinished(run_dir: str | os.PathLike[str]) -> None:
    """Remove a run directory, parts included, unless its ``results.json`` marks it finished: the
    parts of a failed or stopped run are no run that ``report`` or the history could show."""
    if not results_path(run_dir).exists():
        shutil.rmtree(run_dir, ignore_errors=True)
