"""Task runners by name: checked without building one, and once per run."""

from __future__ import annotations

import logging
import os

import pytest

from featurestore.errors import InvalidName, InvalidOption
from flows import dask_cluster
from flows.runners import ENV_DASK_ADDRESS, check_task_runner, runner_checked_once


def test_checking_a_runner_builds_none_and_leaves_the_process_as_it_was(monkeypatch):
    # Checking the dask runner built a local cluster's runner, which set DASK_LOGGING__DISTRIBUTED
    # and the distributed logger's level for the rest of the process.
    monkeypatch.delenv(ENV_DASK_ADDRESS, raising=False)
    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED", raising=False)
    level = logging.getLogger("distributed").level
    check_task_runner("dask", 2)
    assert "DASK_LOGGING__DISTRIBUTED" not in os.environ and logging.getLogger("distributed").level == level
    with pytest.raises(InvalidName, match="^unknown task runner 'slurm': choose one of dask, processes, threads$"):
        check_task_runner("slurm", 2)
    with pytest.raises(InvalidOption, match="^--workers 0: a flow runs at least 1 task at once"):
        check_task_runner("threads", 0)


def test_a_run_probes_the_dask_scheduler_once(monkeypatch):
    probes = []
    monkeypatch.setattr(dask_cluster, "check_scheduler_answers", probes.append)
    monkeypatch.setenv(ENV_DASK_ADDRESS, "tcp://scheduler:8786")
    with runner_checked_once("dask", 2):
        check_task_runner("dask", 2)  # the flows of the run, and their runners
        check_task_runner("dask", 2)
    assert probes == ["tcp://scheduler:8786"]
    check_task_runner("dask", 2)  # the next run probes it again: the scheduler may have stopped since
    assert probes == ["tcp://scheduler:8786"] * 2
