"""End to end through a real Prefect server: deploy prefect.yaml, start a worker, `prefect deployment run`."""

import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prefect_services import PREFECT, prefect_server, start, stop

from featurestore.errors import StoreCorrupt
from featurestore.store import verify_file
from featurestore.store.format import COMMITTED
from featurestore.store.h5io import open_h5
from featurestore.store.paths import lock_path, partial_path

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist (make setup installs it)"),
]


def prefect(*args, env, timeout=300):
    result = subprocess.run([*PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_feature_pipeline_deployment_runs_on_a_worker(tmp_path):
    home = tmp_path / "featurestore-home"
    with prefect_server(tmp_path) as (api_url, env):
        env.update(FEATURESTORE_CHECKOUT=str(REPO), PREFECT_WORKER_QUERY_SECONDS="2")
        prefect("work-pool", "create", "featurestore", "--type", "process", env=env)
        deployed = prefect("--no-prompt", "deploy", "--all", env=env)
        assert "feature-pipeline/nightly" in deployed
        # A worker started without the checkout: the run fails at its pull step, saying what is missing.
        # (It used to run whatever code its Python found, or crash with tracebacks naming a temporary folder.)
        bare_env = {k: v for k, v in env.items() if k != "FEATURESTORE_CHECKOUT"}
        bare = start([*PREFECT, "worker", "start", "--pool", "featurestore"],
                     dict(bare_env, FEATURESTORE_HOME=str(tmp_path / "bare-home")), tmp_path / "bare.log", cwd=tmp_path)
        try:
            failed = subprocess.run([*PREFECT, "deployment", "run", "ingest/default", "--watch", "--watch-timeout", "300"],
                                    env=env, cwd=REPO, capture_output=True, text=True, timeout=330)
        finally:
            stop(bare)
        assert failed.returncode != 0 and "CRASHED" in failed.stdout.upper(), failed.stdout[-2000:]
        missing = ("CheckoutNotFound: $FEATURESTORE_CHECKOUT is not set on this worker; start the worker as "
                   "`FEATURESTORE_CHECKOUT=/path/to/featurestore prefect worker start")
        assert missing in (tmp_path / "bare.log").read_text()
        # ... and in the run's own logs, where the README says a failed run's reason is
        run_id = re.search(r"UUID: ([0-9a-f-]{36})", failed.stdout).group(1)
        assert missing in " ".join(prefect("flow-run", "logs", run_id, env=env).split())
        assert not (tmp_path / "bare-home").exists()
        worker = start([*PREFECT, "worker", "start", "--pool", "featurestore"], env, tmp_path / "worker.log", cwd=tmp_path)
        try:
            parameters = ["-p", f"root={home}", "-p", "limit_per_class=5",
                          "-p", "models=" + json.dumps(["efficientnet_lite0", "efficientnet_lite1"])]
            out = prefect("deployment", "run", "feature-pipeline/nightly", *parameters, "--watch",
                          "--watch-timeout", "900", env=env, timeout=960)
            assert "COMPLETED" in out.upper(), out
            # A per-flow deployment takes the task runner and its size as parameters, as the CLI does.
            out = prefect("deployment", "run", "evaluate/default", "-p", f"root={home}", "-p", "task_runner=processes",
                          "-p", "workers=1", "-p", 'classifiers=["knn"]', "-p", "stacking=false", "--watch",
                          "--watch-timeout", "600", env=env, timeout=660)
            assert "COMPLETED" in out.upper(), out
        finally:
            stop(worker)
    worker_log = (tmp_path / "worker.log").read_text()
    assert "recomputed" in worker_log, worker_log[-3000:]
    for model in ("efficientnet_lite0", "efficientnet_lite1"):
        assert verify_file(home / "stores" / "fashion-mnist" / f"{model}.h5").ok
    runs = sorted((home / "runs").iterdir())
    assert len(runs) == 2
    results = pd.read_csv(runs[0] / "results.csv")
    assert {"efficientnet_lite0", "efficientnet_lite1"} <= set(results["model"])
    assert (runs[0] / "report.md").exists()
    assert set(pd.read_csv(runs[1] / "results.csv")["classifier"]) == {"knn"}
    assert worker.poll() is not None



@pytest.mark.parametrize("task_runner", ["threads", "processes"])
def test_cancel_stops_a_deployment_runs_extraction_after_its_batch_and_a_rerun_resumes(tmp_path, task_runner):
    # `prefect flow-run cancel` (SIGTERM to the run's process group, SIGKILL 30 s later) let the extract task
    # run its whole pass in a thread, or killed it saying nothing and leaving its lock file (review 35 B1, M2);
    # it ended process-pool workers at once, the same way.
    home = tmp_path / "featurestore-home"
    store = home / "stores" / "fashion-mnist" / "efficientnet_lite0.h5"
    with prefect_server(tmp_path) as (api_url, env):
        env.update(FEATURESTORE_CHECKOUT=str(REPO), PREFECT_WORKER_QUERY_SECONDS="2")
        prefect("work-pool", "create", "featurestore", "--type", "process", env=env)
        prefect("--no-prompt", "deploy", "--all", env=env)
        worker = start([*PREFECT, "worker", "start", "--pool", "featurestore"], env, tmp_path / "worker.log", cwd=tmp_path)
        try:
            parameters = ["-p", f"root={home}", "-p", "limit_per_class=200", "-p", 'models=["efficientnet_lite0"]',
                          "-p", 'classifiers=["knn"]', "-p", "stacking=false", "-p", f"task_runner={task_runner}"]
            started = prefect("deployment", "run", "feature-pipeline/nightly", *parameters, env=env)
            run_id = re.search(r"UUID: ([0-9a-f-]{36})", started).group(1)
            committed = _wait_for(lambda: _committed_rows(partial_path(store)), timeout=600)
            prefect("flow-run", "cancel", run_id, env=env)
            _wait_for(lambda: _states(api_url, "feature-pipeline") == ["CANCELLED"], timeout=300)
            # Its extract subflow ends Cancelled too (not Crashed), once the extraction has stopped.
            assert _states(api_url, "extract") == ["CANCELLED"]
            warnings = [log["message"] for log in httpx.post(f"{api_url}/logs/filter", timeout=30, json={
                "logs": {"level": {"ge_": 30}}, "limit": 200}).json()]
            found = [re.fullmatch(r".*efficientnet_lite0\.h5\.partial: stopped after (\d+) of 4000 rows, which are kept; "
                                  r"run extract again to resume", message) for message in warnings]
            kept = [int(match.group(1)) for match in found if match]
            assert len(kept) == 1 and committed <= kept[0] < 4000, warnings  # in the run's logs, not only the worker's
            assert not store.exists() and not lock_path(store).exists() and partial_path(store).exists()
            out = prefect("deployment", "run", "feature-pipeline/nightly", *parameters, "--watch", "--watch-timeout",
                          "600", env=env, timeout=660)
            assert "COMPLETED" in out.upper(), out
        finally:
            stop(worker)
    assert f"fashion-mnist/efficientnet_lite0: resumed, {4000 - kept[0]} rows" in (tmp_path / "worker.log").read_text()
    assert verify_file(store).ok


def _wait_for(condition, timeout: float):
    """The first true value of ``condition()``, polled until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"gave up after {timeout} s"
        time.sleep(0.5)
    return value


def _committed_rows(partial: Path) -> int:
    """Rows the store being written at ``partial`` has committed (0 before it exists or mid-flush)."""
    try:
        with open_h5(partial, locking=False) as file:
            return int(file[COMMITTED][0])
    except (OSError, KeyError, StoreCorrupt):  # a read mid-flush can see a truncated file; look again
        return 0


def _states(api_url: str, flow: str) -> list[str]:
    """State types of the runs of ``flow`` on the server at ``api_url`` that are past SCHEDULED (the nightly
    schedule's runs are left out)."""
    runs = httpx.post(f"{api_url}/flow_runs/filter", timeout=30, json={"flows": {"name": {"any_": [flow]}}}).json()
    return [run["state"]["type"] for run in runs if run["state"]["type"] != "SCHEDULED"]
