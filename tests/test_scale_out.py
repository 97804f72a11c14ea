"""Scale-out on a local multi-process Dask cluster, every worker reporting to one Prefect API."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
from _evaluate_stores import DATASET, write_digits_stores
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.api import shared_api
from flows.evaluate import evaluate

pytestmark = pytest.mark.slow


def accuracies(run_dir: str) -> dict[tuple[str, str], float]:
    document = json.loads((Path(run_dir) / "results.json").read_text())
    return {(r["model"], r["classifier"]): r["accuracy"] for r in document["results"]}


CLASSIFIER_TASKS = ("logreg on", "knn on")


def task_runs_once_finished(flow_state, expected: int, timeout: float = 120) -> list:
    """The task runs of ``flow_state``'s flow run, read once ``expected`` classifier runs have reached a
    final state on the API.

    Filtered on the server: the temporary server keeps the profile's database, and an unfiltered read
    returns 200 task runs of all runs ever made there, not necessarily this one's. Task run states reach
    the server as events, after the flow has returned, so they are read again until they are there.
    """
    only_this_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id]))
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=only_this_run)
        classifiers = [t for t in runs if t.name.startswith(CLASSIFIER_TASKS)]
        finished = len(classifiers) >= expected and all(t.state and t.state.is_final() for t in classifiers)
        if finished or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def test_evaluate_fan_out_on_dask_reports_to_one_api(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    root = str(tmp_path / "home")
    write_digits_stores(root)
    with shared_api() as api_url:
        assert api_url.startswith("http://127.0.0.1") and os.environ["PREFECT_API_URL"] == api_url
        # The runner is a parameter of the flow (as on a deployment run), not an option of the caller.
        state = evaluate(datasets=[DATASET], classifiers=["logreg", "knn"], stacking=False, root=root,
                         task_runner="dask", workers=2, return_state=True)
        task_runs = task_runs_once_finished(state, 4)
    assert "PREFECT_API_URL" not in os.environ
    # The local cluster's banners (scheduler, nannies, workers: ~70 INFO lines) are not logged; the
    # parent's records are here, and the workers take the same level.
    assert not [r.getMessage() for r in caplog.records
                if r.name.startswith("distributed") and r.levelno < logging.WARNING]
    run_dir = state.result()
    classifier_runs = [t for t in task_runs if t.name.startswith(CLASSIFIER_TASKS)]
    assert len(classifier_runs) == 4 and all(t.state.is_completed() for t in classifier_runs)

    with shared_api():
        one_at_a_time = evaluate(datasets=[DATASET], classifiers=["logreg", "knn"], stacking=False, root=root,
                                 task_runner="threads", workers=1, return_state=True)
        task_runs = task_runs_once_finished(one_at_a_time, 4)
    assert accuracies(run_dir) == accuracies(one_at_a_time.result())
    # workers=1 runs one task at a time: Prefect's default pool, which the flow used unless a caller
    # replaced its runner (a deployment run cannot), ran all of them at once.
    spans = sorted((t.start_time, t.end_time) for t in task_runs)
    assert len(spans) >= 4 and all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
