"""Flows on an existing Dask cluster ($FEATURESTORE_DASK_ADDRESS) whose worker runs in another directory."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _evaluate_stores import DATASET, write_digits_stores
from prefect_services import free_port, start, stop
from test_extract_support import onnx_cache_dir, shared_cache_root, write_photo_dataset

from featurestore.errors import InvalidOption
from flows import dask_cluster
from flows.runners import ENV_DASK_ADDRESS, check_task_runner

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


@pytest.fixture(scope="module", autouse=True)
def prefect():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def scheduler(directory: Path):
    """Start a Dask scheduler on a free port; return (process, address)."""
    port = free_port()
    process = start([*DASK, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], dict(os.environ),
                    directory / f"scheduler-{port}.log", cwd=directory)
    address = f"tcp://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, address
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "the Dask scheduler did not start"
            time.sleep(0.5)


def worker(address: str, directory: Path, pythonpath: str) -> subprocess.Popen:
    """Start one single-threaded Dask worker in ``directory`` with ``pythonpath``."""
    env = dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1")
    return start([*WORKER, address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"], env,
                 directory / "worker.log", cwd=directory)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and one worker whose directory is not the test's; yields the scheduler's address."""
    elsewhere = tmp_path_factory.mktemp("worker-directory")
    process, address = scheduler(elsewhere)
    workers = worker(address, elsewhere, f"{REPO}{os.pathsep}{REPO / 'tests'}")
    try:
        yield address
    finally:
        stop(workers)
        stop(process)


def test_a_relative_root_is_the_flows_not_the_workers(cluster, tmp_path, tmp_path_factory, monkeypatch):
    from flows.evaluate import run_evaluate
    from flows.extract import run_extract

    # The worker read `--root home` from its own directory: the run failed naming the worker's path, or,
    # with a root of that name there, wrote the stores into that other root and reported success.
    monkeypatch.setenv(ENV_DASK_ADDRESS, cluster)
    probes = []
    probe = dask_cluster.check_scheduler_answers
    monkeypatch.setattr(dask_cluster, "check_scheduler_answers", lambda address: probes.append(probe(address)))
    monkeypatch.chdir(tmp_path)
    write_photo_dataset(shared_cache_root(tmp_path / "home", onnx_cache_dir(tmp_path_factory)), "photos", copies=1)
    (row,) = run_extract("dask", 1, datasets=["photos"], models=["efficientnet_lite0"], root="home")
    assert (row["status"], row["path"]) == ("extracted", str(tmp_path / "home/stores/photos/efficientnet_lite0.h5"))
    assert len(probes) == 1  # once per run: the check before the run starts, not again by the flow's runner

    write_digits_stores(tmp_path / "digits-home")
    run_dir = run_evaluate("dask", 1, datasets=[DATASET], classifiers=["knn"], stacking=False, root="digits-home")
    assert Path(run_dir).parent == tmp_path / "digits-home" / "runs" and (Path(run_dir) / "report.md").is_file()
    assert len(probes) == 2


def test_a_scheduler_that_does_not_answer_is_one_line_at_once(monkeypatch):
    # It took 30 s, then a 154-line traceback that did not name the variable.
    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv(ENV_DASK_ADDRESS, address)
    with pytest.raises(InvalidOption, match=rf"^the Dask scheduler at {address} \(\${ENV_DASK_ADDRESS}\) does not "
                                            rf"answer \(Connection refused\); start it or fix the address, or unset "
                                            rf"{ENV_DASK_ADDRESS} for a local cluster$"):
        check_task_runner("dask", 1)
    monkeypatch.setenv(ENV_DASK_ADDRESS, address.removeprefix("tcp://"))  # Dask reads HOST:PORT as tcp
    with pytest.raises(InvalidOption, match=rf"^the Dask scheduler at {address.removeprefix('tcp://')} .* does not "
                                            r"answer \(Connection refused\)"):
        check_task_runner("dask", 1)
    monkeypatch.setenv(ENV_DASK_ADDRESS, "127.0.0.1:8786:x")
    with pytest.raises(InvalidOption, match=rf"^{ENV_DASK_ADDRESS}=127.0.0.1:8786:x: not a Dask scheduler address"):
        check_task_runner("dask", 1)


def test_a_cluster_that_cannot_run_the_tasks_is_one_line_not_a_hang(tmp_path):
    # With no worker, or only workers that cannot import this checkout (they crash on each task), the
    # flow waited for ever; the reason was only in the worker's log.
    from prefect.settings import PREFECT_API_URL

    write_photo_dataset(tmp_path / "home", "photos", copies=1)
    process, address = scheduler(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO), PREFECT_API_URL=PREFECT_API_URL.value(),
               **{ENV_DASK_ADDRESS: address, "FEATURESTORE_DASK_WAIT": "2"})
    command = [sys.executable, "-m", "flows.extract", "--dataset", "photos", "--root", str(tmp_path / "home"),
               "--task-runner", "dask"]
    stray = None
    try:
        alone = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert alone.returncode == 2, alone.stderr[-3000:]
        assert (f"error: no Dask worker joined the scheduler at {address} (${ENV_DASK_ADDRESS}) within 2 s: start one "
                f"with `dask worker {address}`") in alone.stderr, alone.stderr[-3000:]
        # A worker started in another checkout, whose tasks need a name this library does not have.
        other = tmp_path / "other-checkout" / "tasks"
        other.mkdir(parents=True)
        (other / "__init__.py").touch()
        (other / "extract.py").write_text("from featurestore.extract import retired_name\n")
        stray = worker(address, tmp_path, str(other.parent))
        env["FEATURESTORE_DASK_WAIT"] = "60"
        lost = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert lost.returncode == 2, lost.stderr[-3000:]
        assert re.search(r"error: the Dask worker tcp://\S+ cannot import this checkout's tasks \(ImportError: cannot "
                         rf"import name 'retired_name' from 'featurestore.extract' .*\): start it with PYTHONPATH={REPO} ",
                         lost.stderr), lost.stderr[-3000:]
    finally:
        if stray:
            stop(stray)
        stop(process)
