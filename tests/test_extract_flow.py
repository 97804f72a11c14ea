"""The Prefect ``extract`` flow: plan, fan out, skip complete stores, shard and merge."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from test_extract import complete_without_a_model, spawn, wait_for_commits
from test_extract_support import onnx_cache_dir, shared_cache_root, write_photo_dataset

import featurestore
from featurestore.backbones import WeightsMismatch
from featurestore.errors import StoreLocked, StoreStale
from featurestore.store import verify_file
from featurestore.store.paths import lock_path, partial_path, store_path
from flows.extract import summary_line

pytestmark = pytest.mark.slow
MODELS = ["efficientnet_lite0", "efficientnet_lite1"]


@pytest.fixture(scope="module", autouse=True)
def prefect():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_extracts_then_skips_then_shards(tmp_path, tmp_path_factory):
    from flows.extract import extract, run_extract

    onnx_cache = onnx_cache_dir(tmp_path_factory)
    root = shared_cache_root(tmp_path / "root", onnx_cache)
    write_photo_dataset(root, "photos", copies=2)
    first = extract(datasets=["photos"], models=MODELS, root=str(root))
    assert sorted((r["model"], r["status"]) for r in first) == [(m, "extracted") for m in MODELS]
    stores = {m: store_bytes(root, m) for m in MODELS}

    second = extract(datasets=["photos"], models=MODELS, root=str(root))
    assert sorted((r["model"], r["status"]) for r in second) == [(m, "skipped") for m in MODELS]
    assert {m: store_bytes(root, m) for m in MODELS} == stores

    sharded = shared_cache_root(tmp_path / "sharded", onnx_cache)
    write_photo_dataset(sharded, "photos", copies=2)
    # One run per shard, as on two hosts: the first leaves the merge to the run that completes the set.
    first_shard = run_extract("threads", 2, datasets=["photos"], models=MODELS, root=str(sharded), shards=2,
                              shard_index=0, share_decode=False)
    assert sorted((r["model"], r["status"]) for r in first_shard) == [(m, "shard-done") for m in MODELS]
    # It said only `shard-done`: neither what its shard wrote nor which shards the merge waits for.
    for line in map(summary_line, first_shard):
        assert re.fullmatch(r"photos/\S+: shard-done, shard 0/2 wrote 5 rows at [0-9.]+ img/s; waiting for shard 1/2; "
                            r"the run that completes the set merges the store", line), line
    last_shard = run_extract("threads", 2, datasets=["photos"], models=MODELS, root=str(sharded), shards=2,
                             shard_index=1, share_decode=False)
    assert sorted((r["model"], r["status"]) for r in last_shard) == [(m, "merged") for m in MODELS]
    # A merge runs no model: it said "10 rows at 0.0 img/s".
    assert sorted(map(summary_line, last_shard)) == [f"photos/{m}: merged, 10 rows from 2 shards"
                                                     for m in sorted(MODELS)]
    for model in MODELS:
        np.testing.assert_allclose(featurestore.load_arrays("photos", model, root=sharded).features,
                                   featurestore.load_arrays("photos", model, root=root).features, rtol=1e-5, atol=1e-5)

    write_photo_dataset(root, "photos", copies=3)  # ingested again: the stores are now stale
    with pytest.raises(StoreStale, match=r"earlier manifest of 'photos' \(ingested again since\); extract it again "
                                         r"with --overwrite"):
        extract(datasets=["photos"], models=MODELS[:1], root=str(root))
    (rebuilt,) = extract(datasets=["photos"], models=MODELS[:1], root=str(root), replace_stale=True)
    rows = len(featurestore.datasets.load_manifest("photos", root).frame)
    assert (rebuilt["status"], rebuilt["written"]) == ("extracted", rows)
    (replaced,) = extract(datasets=["photos"], models=MODELS[1:], root=str(root), overwrite=True)
    assert (replaced["status"], replaced["written"]) == ("extracted", rows)
    assert featurestore.catalog(root=root)["state"].tolist() == ["complete", "complete"]


def test_ctrl_c_stops_the_flow_within_a_batch_and_a_rerun_resumes(tmp_path, tmp_path_factory, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    root = shared_cache_root(tmp_path / "root", onnx_cache_dir(tmp_path_factory))
    write_photo_dataset(root, "many", copies=24, size=48)
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the child reports to this module's server
    # `python -m flows.extract`, committing every batch (the flow has no --commit-bytes) and computing on one
    # thread, as slow_extraction_child does, so that rows land on disk while the test watches.
    argv = ["flows.extract", "--dataset", "many", "--models", "efficientnet_lite0", "--root", str(root),
            "--batch-size", "4"]
    child = spawn(root, "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                        "from featurestore.extract import runner; "
                        "runner.extract.__kwdefaults__.update(commit_bytes=1, workers=1, threads=1); "
                        f"sys.argv = {argv!r}; runpy.run_module('flows.extract', run_name='__main__')")
    output = stopped_within_a_batch_then_resumed(child, root, signal.SIGINT)
    assert child.returncode == 130, output[-3000:]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["cancel", "ctrl-c"])
def test_stopping_the_flow_stops_the_extraction_within_a_batch_and_a_rerun_resumes(tmp_path, tmp_path_factory,
                                                                                  monkeypatch, stop):
    # `prefect flow-run cancel` (Prefect 3.8.8's runner) sends the flow run's process group SIGTERM, which
    # Prefect's handler turns into TerminationSignal in the flow's main thread, and SIGKILL 30 s later. A
    # Ctrl-C of `prefect serve` reaches its flow's process as KeyboardInterrupt, with no ctrl_c_stops_tasks
    # around the flow. Either way the task thread went on with its whole pass (or was killed mid-pass,
    # saying nothing). The flow called as a deployment calls it (no run_extract around it), committing every batch.
    child, output = stopped_flow(tmp_path, tmp_path_factory, monkeypatch, "from featurestore.extract import runner; "
                                 "runner.extract.__kwdefaults__.update(commit_bytes=1, workers=1, threads=1); ",
                                 stop=stop)
    # Prefect ends the process as its SIGTERM handler does, once the task thread has stopped; an
    # uncaught KeyboardInterrupt ends Python by SIGINT.
    assert child.returncode == -stop, output[-3000:]


def stopped_flow(tmp_path, tmp_path_factory, monkeypatch, prelude: str, options: str = "",
                 stop: int = signal.SIGTERM):
    """Run the extract flow over 'many' in a child (``prelude`` first, ``options`` added to its call),
    send it ``stop`` (a cancel's SIGTERM by default) after 8 committed rows and check it stopped within
    a batch and a rerun resumes (``stopped_within_a_batch_then_resumed``); return the child and its output."""
    from prefect.settings import PREFECT_API_URL

    root = shared_cache_root(tmp_path / "root", onnx_cache_dir(tmp_path_factory))
    write_photo_dataset(root, "many", copies=24, size=48)
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    child = spawn(root, "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); " + prelude
                  + "from flows.extract import extract; "
                  f"extract(datasets=['many'], models=['efficientnet_lite0'], root={str(root)!r}, batch_size=4{options})")
    return child, stopped_within_a_batch_then_resumed(child, root, stop)


def committing_every_batch() -> None:
    """Pool-worker initializer of the processes cancel test: the runner's own, then this worker's
    extractions commit every batch and compute on one thread (a worker imports the library afresh,
    so the test's patch must be made in the worker)."""
    from featurestore.extract import runner
    from tasks.interrupts import handle_stops_in_worker

    handle_stops_in_worker()
    runner.extract.__kwdefaults__.update(commit_bytes=1, workers=1, threads=1)


def test_cancelling_the_flow_stops_process_pool_workers_within_a_batch_and_a_rerun_resumes(tmp_path,
                                                                                         tmp_path_factory,
                                                                                         monkeypatch):
    # `prefect serve`'s runner sends the flow's process alone SIGTERM (a worker sends its whole
    # process group). The flow waited for its pool workers, which ran their whole pass (or were
    # killed by a group SIGTERM saying nothing and leaving the store's lock file).
    child, output = stopped_flow(tmp_path, tmp_path_factory, monkeypatch,
                                 "from flows import runners; from test_extract_flow import committing_every_batch; "
                                 "runners.TASK_RUNNERS.register('processes', runners.TaskRunnerSpec(lambda workers: runners._ProcessPool("
                                 "max_workers=workers, initializer=committing_every_batch), lambda: True), replace=True); ",
                                 ", task_runner='processes', workers=1")
    assert child.returncode == -signal.SIGTERM, output[-3000:]
    assert "TaskStopped: extract_stores: stopped by a cancel" in output, output[-3000:]


def stopped_within_a_batch_then_resumed(child, root, stop: int) -> str:
    """Send ``stop`` to ``child`` (extracting 'many' in batches of 4) once it has committed 8 rows; check
    that its extraction stopped within a few batches, kept its rows and said so, released its lock, and
    that a rerun resumes to a complete, verified store. Return the child's output."""
    from featurestore.extract.stop import request_stop
    from flows.extract import run_extract

    committed = wait_for_commits(child, root, 8)
    child.send_signal(stop)
    stdout, stderr = child.communicate(timeout=120)
    output = stdout + stderr
    found = re.search(r"efficientnet_lite0\.h5\.partial: stopped after (\d+) of 120 rows, which are kept; run extract again "
                      r"to resume", output)
    assert found, output[-3000:]
    kept = int(found.group(1))
    (state,) = featurestore.catalog(root=root)["state"]
    # Stopped within a few batches of 4 rows, not at the end of the pass (before the fix the task
    # thread went on to row 120): counted in rows, not timed.
    assert committed <= kept < committed + 40 and state == f"interrupted {kept}/120", output[-3000:]
    final = store_path("many", "efficientnet_lite0", root)
    assert not lock_path(final).exists()
    request_stop()  # left over from an earlier run in this process: run_extract clears it as it starts
    (resumed,) = run_extract(datasets=["many"], models=["efficientnet_lite0"], root=str(root), batch_size=8)
    assert (resumed["status"], resumed["written"]) == ("resumed", 120 - kept)
    assert featurestore.catalog(root=root)["state"].tolist() == ["complete"] and verify_file(final).ok
    return output


def ctrl_c_in_a_terminal(root, argv: list[str], ready) -> tuple[int, str]:
    """Run ``python -m flows.extract`` with ``argv`` in a process group of its own, as a terminal
    does, send the whole group SIGINT as soon as ``ready(child)`` holds; return exit code and output."""
    child = spawn(root, "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                        f"sys.argv = {argv!r}; runpy.run_module('flows.extract', run_name='__main__')", own_session=True)
    try:
        deadline = time.time() + 180
        while not ready(child) and time.time() < deadline and child.poll() is None:
            time.sleep(0.01)
        assert ready(child), child.communicate()[1][-3000:]
        os.killpg(child.pid, signal.SIGINT)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    return child.returncode, stdout + stderr


def _pool_workers(parent: int) -> list[int]:
    """Pids of the process-pool workers started by ``parent`` (spawned: ``spawn_main`` in their command line)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(status.read_text().rsplit(")", 1)[1].split()[1])
            command = (status.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == parent and b"spawn_main" in command:
            found.append(int(status.parent.name))
    return found


def test_ctrl_c_in_a_terminal_stops_process_pool_workers_and_the_flow_exits(tmp_path, tmp_path_factory, monkeypatch):
    from flows.extract import run_extract

    root = shared_cache_root(tmp_path / "root", onnx_cache_dir(tmp_path_factory))
    write_photo_dataset(root, "many", copies=80, size=48)
    # No API configured, as for a user trying it out: the command starts its temporary server.
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    argv = ["flows.extract", "--dataset", "many", "--models", "efficientnet_lite0", "--root", str(root),
            "--batch-size", "8", "--task-runner", "processes", "--workers", "2"]
    # A terminal's Ctrl-C reaches its whole process group: the flow's process, the worker
    # extracting, the idle one and the temporary API server. Before the fixes the flow process
    # never exited; then, with the server stopped by the Ctrl-C too, it exited 1 after minutes
    # of retrying its API.
    partial = partial_path(store_path("many", "efficientnet_lite0", root))
    # Once the partial store exists, the task body is running in a worker.
    returncode, output = ctrl_c_in_a_terminal(root, argv, lambda child: partial.exists())
    assert returncode == 130, output[-3000:]
    assert "TaskStopped: extract_stores: stopped by Ctrl-C" in output, output[-3000:]
    assert "Error logging to API" not in output and "ConnectError" not in output, output[-3000:]
    # Rows are committed every few MiB: a stop before the first commit leaves no store behind.
    found = re.search(r"efficientnet_lite0\.h5\.partial: stopped after (\d+) of 400 rows, which are kept", output)
    kept = int(found.group(1)) if found else 0
    (rerun,) = run_extract(datasets=["many"], models=["efficientnet_lite0"], root=str(root), batch_size=32)
    assert rerun["written"] == 400 - kept and featurestore.catalog(root=root)["state"].tolist() == ["complete"]


def test_flow_checks_its_options_even_when_every_store_is_complete(tmp_path):
    from featurestore.errors import InvalidName, InvalidOption, StoreConflict
    from flows.extract import extract, run_extract

    write_photo_dataset(tmp_path, "photos", copies=1)
    store = complete_without_a_model(tmp_path, "photos", "efficientnet_lite0")
    before = store.stat().st_mtime_ns
    request = dict(datasets=["photos"], models=["efficientnet_lite0"], root=str(tmp_path))
    with pytest.raises(InvalidOption, match="--batch-size -5: must be 1 or more"):
        run_extract(**request, batch_size=-5)
    with pytest.raises(InvalidName, match="'resnet18' is not among the models of this run"):
        run_extract(**request, weights={"resnet18": str(tmp_path / "r.pth")})
    # shards=0 extracted nothing and reported success; an index out of range passed on a complete store.
    for flow in (run_extract, extract):  # the CLI's way, and a deployment's (the flow called as it is)
        with pytest.raises(InvalidOption, match=r"^shards=0: split the rows into 1 or more shards"):
            flow(**request, shards=0)
        with pytest.raises(InvalidOption, match=r"^shard_index=5: with shards=2 it is one of 0\.\.1"):
            flow(**request, shards=2, shard_index=5)
    # An explicit precision other than the complete store's is planned as the library plans it (the flow
    # skipped the store, so --precision bf16 --overwrite left the fp32 features in place).
    with pytest.raises(StoreConflict, match="requested bf16"):
        run_extract(**request, runtime="torch", precision="bf16")
    assert store.stat().st_mtime_ns == before
    assert [r["status"] for r in run_extract(**request)] == ["skipped"]


@pytest.mark.parametrize("models, weights, message", [
    # one model: a bare FILE is its weights, as for `featurestore extract` (it was a ValueError traceback)
    ("efficientnet_lite0", "missing.pth", "missing.pth"),
    ("efficientnet_lite0,efficientnet_lite1", "missing.pth", "with several models write --weights MODEL=FILE"),
])
def test_flow_module_takes_weights_as_the_cli_does(tmp_path, capsys, models, weights, message):
    from flows.extract import main

    write_photo_dataset(tmp_path, "photos", copies=1)
    with pytest.raises(SystemExit) as exit_:
        main(["--dataset", "photos", "--models", models, "--weights", str(tmp_path / weights), "--root", str(tmp_path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code in (1, 2) and error[-1].startswith("error: ") and message in error[-1]


def test_flow_module_takes_the_short_and_repeated_options_of_the_cli(tmp_path, capsys):
    from flows.extract import main

    write_photo_dataset(tmp_path, "photos", copies=1)
    with pytest.raises(SystemExit) as exit_:  # featurestore extract's spelling: -d, -m, repeated
        main(["-d", "photos", "-m", "efficientnet_lite0", "-m", "efficientnet_lite1", "--weights",
              str(tmp_path / "w.pth"), "--root", str(tmp_path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and error[-1].startswith("error: --weights ") and "MODEL=FILE" in error[-1]


def test_flow_module_passes_every_option_to_the_flow(monkeypatch, capsys):
    import flows.extract

    given = {}
    monkeypatch.setattr(flows.extract, "run_extract", lambda **parameters: given.update(parameters) or [])
    with pytest.raises(SystemExit) as exit_:  # --replace-stale was on no command line
        flows.extract.main(["-d", "a,b", "--datasets", "c", "--model", "efficientnet_lite0", "--weights", "w.pth",
                            "--device", "cpu", "--runtime", "torch", "--precision", "fp32", "--batch-size", "8",
                            "--layer", "logits", "--shards", "2", "--shard-index", "1", "--no-share-decode",
                            "--overwrite", "--replace-stale", "--task-runner", "processes", "--workers", "2",
                            "--root", "r"])
    assert exit_.value.code == 0 and capsys.readouterr().out == "[]\n"
    assert given == dict(
        task_runner="processes", workers=2, datasets=["a", "b", "c"], models=["efficientnet_lite0"], root="r",
        device="cpu", runtime="torch", precision="fp32", batch_size=8, weights={"efficientnet_lite0": "w.pth"},
        layer="logits", shards=2, shard_index=1, share_decode=False, onnx_specs=None, overwrite=True,
        replace_stale=True)


def test_ctrl_c_while_pool_workers_start_prints_no_worker_traceback(tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    write_photo_dataset(tmp_path, "photos", copies=1)
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    argv = ["flows.extract", "--dataset", "photos", "--models", "efficientnet_lite0", "--root", str(tmp_path),
            "--task-runner", "processes", "--workers", "2"]
    # Once a worker exists it spends seconds starting Python and importing Prefect. Before the fix
    # the terminal's Ctrl-C interrupted that import and the worker printed its traceback.
    returncode, output = ctrl_c_in_a_terminal(tmp_path, argv, lambda child: bool(_pool_workers(child.pid)))
    assert returncode == 130, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]


@pytest.mark.parametrize("error, retried", [
    (OSError(5, "Input/output error"), True),  # a crash: the retry resumes the stores
    (WeightsMismatch("w.pth: weights are not efficientnet_lite0's"), False),
    (StoreLocked("a.h5.partial: pid 7 is still writing this store"), False),
])
def test_extract_task_retries_crashes_not_bad_input(error, retried):
    from prefect.states import Failed

    from tasks.extract import extract_stores, retry_unless_bad_input

    assert extract_stores.retries == 1
    assert retry_unless_bad_input(extract_stores, None, Failed(data=error)) is retried


def store_bytes(root, model: str) -> bytes:
    return store_path("photos", model, root).read_bytes()


def test_pool_workers_of_a_run_on_a_temporary_server_report_to_it(tmp_path, tmp_path_factory, monkeypatch):
    # `prefect serve` with no Prefect server runs each flow on a temporary server of its own, as a flow
    # called from Python does; with task_runner='processes' every pool worker started one more.
    root = shared_cache_root(tmp_path / "root", onnx_cache_dir(tmp_path_factory))
    write_photo_dataset(root, "photos", copies=1)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    child = spawn(root, "from flows.extract import extract; extract(datasets=['photos'], "
                        f"models=['efficientnet_lite0'], root={str(root)!r}, task_runner='processes', workers=1)")
    stdout, stderr = child.communicate(timeout=300)
    output = stdout + stderr
    assert child.returncode == 0 and "photos/efficientnet_lite0: extracted, 5 rows" in output, output[-3000:]
    assert output.count("Starting temporary server") == 1, output[-3000:]
