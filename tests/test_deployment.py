"""End to end through a real Prefect server: deploy prefect.yaml, start a worker, `prefect deployment run`."""

import json
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

