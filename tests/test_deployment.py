"""End to end through a real Prefect server: deploy prefect.yaml, start a worker, `prefect deployment run`."""

import json
import re
import subprocess
import time
from dataclasses import dataclass
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


@dataclass
class Deployment:
    """A Prefect server with prefect.yaml deployed to its `featurestore` pool, and at most one worker with the
    checkout serving that pool. The tests share it (a server, a deploy and a worker take a minute to start), so each
    reads only its own runs: by flow-run id from the server, by offset from the worker's log."""

    api_url: str
    env: dict[str, str]
    workdir: Path
    deployed: str
    worker: subprocess.Popen | None = None

    @property
    def worker_log(self) -> Path:
        """The worker's output."""
        return self.workdir / "worker.log"

    def serve(self) -> int:
        """Start the worker unless it runs; the length of its log now, for ``log`` to read from."""
        if self.worker is None:
            # Unbuffered, so that a run's lines reach the log while the worker still runs.
            self.worker = start([*PREFECT, "worker", "start", "--pool", "featurestore"],
                                dict(self.env, PYTHONUNBUFFERED="1"), self.worker_log, cwd=self.workdir)
        return self.worker_log.stat().st_size

    def stop_worker(self) -> None:
        """Stop the worker, if one runs, and every process it started."""
        if self.worker is not None:
            stop(self.worker)
            assert self.worker.poll() is not None
            self.worker = None

    def log(self, since: int) -> str:
        """What the worker wrote from offset ``since`` (from ``serve``) on."""
        with self.worker_log.open("rb") as file:
            file.seek(since)
            return file.read().decode(errors="replace")

    def wait_logged(self, text: str, since: int) -> None:
        """Wait until the worker has written ``text`` since offset ``since``: it copies a run's output on its own
        time, which can end after the run's state said it was done."""
        _wait_for(lambda: text in self.log(since), timeout=60, explain=lambda: self.log(since)[-3000:])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """One server, work pool and `prefect deploy --all` for this module's tests; the worker starts on first use."""
    workdir = tmp_path_factory.mktemp("deployment")
    with prefect_server(workdir) as (api_url, env):
        env.update(FEATURESTORE_CHECKOUT=str(REPO), PREFECT_WORKER_QUERY_SECONDS="2")
        prefect("work-pool", "create", "featurestore", "--type", "process", env=env)
        shared = Deployment(api_url, env, workdir, prefect("--no-prompt", "deploy", "--all", env=env))
        try:
            yield shared
        finally:
            shared.stop_worker()


def test_feature_pipeline_deployment_runs_on_a_worker(tmp_path, deployment):
    home = tmp_path / "featurestore-home"
    env = deployment.env
    assert "feature-pipeline/nightly" in deployment.deployed
    # A worker started without the checkout: the run fails at its pull step, saying what is missing.
    # (It used to run whatever code its Python found, or crash with tracebacks naming a temporary folder.)
    deployment.stop_worker()  # the run must go to the bare worker
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
    since = deployment.serve()
    parameters = ["-p", f"root={home}", "-p", "limit_per_class=5",
                  "-p", "models=" + json.dumps(["efficientnet_lite0", "efficientnet_lite1"])]
    out = prefect("deployment", "run", "feature-pipeline/nightly", *parameters, "--watch",
                  "--watch-timeout", "900", env=env, timeout=960)
    assert "COMPLETED" in out.upper(), out
    deployment.wait_logged("recomputed", since)
    # A per-flow deployment takes the task runner and its size as parameters, as the CLI does.
    out = prefect("deployment", "run", "evaluate/default", "-p", f"root={home}", "-p", "task_runner=processes",
                  "-p", "workers=1", "-p", 'classifiers=["knn"]', "-p", "stacking=false", "--watch",
                  "--watch-timeout", "600", env=env, timeout=660)
    assert "COMPLETED" in out.upper(), out
    for model in ("efficientnet_lite0", "efficientnet_lite1"):
        assert verify_file(home / "stores" / "fashion-mnist" / f"{model}.h5").ok
    runs = sorted((home / "runs").iterdir())
    assert len(runs) == 2
    results = pd.read_csv(runs[0] / "results.csv")
    assert {"efficientnet_lite0", "efficientnet_lite1"} <= set(results["model"])
    assert (runs[0] / "report.md").exists()
    assert set(pd.read_csv(runs[1] / "results.csv")["classifier"]) == {"knn"}


@pytest.mark.parametrize("task_runner", ["threads", "processes"])
def test_cancel_stops_a_deployment_runs_extraction_after_its_batch_and_a_rerun_resumes(tmp_path, deployment,
                                                                                       task_runner):
    # `prefect flow-run cancel` (SIGTERM to the run's process group, SIGKILL 30 s later) let the extract task
    # run its whole pass in a thread, or killed it saying nothing and leaving its lock file (review 35 B1, M2);
    # it ended process-pool workers at once, the same way.
    home = tmp_path / "featurestore-home"
    store = home / "stores" / "fashion-mnist" / "efficientnet_lite0.h5"
    api_url, env = deployment.api_url, deployment.env
    since = deployment.serve()
    parameters = ["-p", f"root={home}", "-p", "limit_per_class=200", "-p", 'models=["efficientnet_lite0"]',
                  "-p", 'classifiers=["knn"]', "-p", "stacking=false", "-p", f"task_runner={task_runner}"]
    started = prefect("deployment", "run", "feature-pipeline/nightly", *parameters, env=env)
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", started).group(1)
    committed = _wait_for(lambda: _committed_rows(partial_path(store)), timeout=600)
    prefect("flow-run", "cancel", run_id, env=env)
    _wait_for(lambda: _states(api_url, {"id": {"any_": [run_id]}}) == ["CANCELLED"], timeout=300)
    # Its extract subflow ends Cancelled too (not Crashed), once the extraction has stopped.
    assert _states(api_url, {"parent_flow_run_id": {"any_": [run_id]}}, flow="extract") == ["CANCELLED"]
    subflows = _runs(api_url, {"parent_flow_run_id": {"any_": [run_id]}})
    warnings = [log["message"] for log in httpx.post(f"{api_url}/logs/filter", timeout=30, json={
        "logs": {"level": {"ge_": 30}, "flow_run_id": {"any_": [run_id, *(run["id"] for run in subflows)]}},
        "limit": 200}).json()]
    found = [re.fullmatch(r".*efficientnet_lite0\.h5\.partial: stopped after (\d+) of 4000 rows, which are kept; "
                          r"run extract again to resume", message) for message in warnings]
    kept = [int(match.group(1)) for match in found if match]
    assert len(kept) == 1 and committed <= kept[0] < 4000, warnings  # in the run's logs, not only the worker's
    assert not store.exists() and not lock_path(store).exists() and partial_path(store).exists()
    out = prefect("deployment", "run", "feature-pipeline/nightly", *parameters, "--watch", "--watch-timeout",
                  "600", env=env, timeout=660)
    assert "COMPLETED" in out.upper(), out
    deployment.wait_logged(f"fashion-mnist/efficientnet_lite0: resumed, {4000 - kept[0]} rows", since)
    assert verify_file(store).ok


def _wait_for(condition, timeout: float, explain=lambda: ""):
    """The first true value of ``condition()``, polled until ``timeout`` seconds have passed; failing, it says
    ``explain()``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"gave up after {timeout} s\n{explain()}"
        time.sleep(0.5)
    return value


def _committed_rows(partial: Path) -> int:
    """Rows the store being written at ``partial`` has committed (0 before it exists or mid-flush)."""
    try:
        with open_h5(partial, locking=False) as file:
            return int(file[COMMITTED][0])
    except (OSError, KeyError, StoreCorrupt):  # a read mid-flush can see a truncated file; look again
        return 0


def _runs(api_url: str, flow_runs: dict, flow: str | None = None) -> list[dict]:
    """The flow runs on the server at ``api_url`` that match ``flow_runs`` (the API's flow-run filter), of
    ``flow`` if given."""
    body = {"flow_runs": flow_runs} | ({"flows": {"name": {"any_": [flow]}}} if flow else {})
    return httpx.post(f"{api_url}/flow_runs/filter", timeout=30, json=body).json()


def _states(api_url: str, flow_runs: dict, flow: str | None = None) -> list[str]:
    """State types of ``_runs(api_url, flow_runs, flow)``."""
    return [run["state"]["type"] for run in _runs(api_url, flow_runs, flow)]
