"""End to end through a real Prefect server: deploy prefect.yaml, start a worker, `prefect deployment run`."""

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from prefect_services import PREFECT, prefect_server, start, stop

from featurestore.store import verify_file

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

