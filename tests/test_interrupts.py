"""Ctrl-C and a cancel's SIGTERM inside a process-pool worker's task body (``tasks.interrupts``),
without the pool and in a real one; and Ctrl-C while the command line is still loading."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

import pytest

from featurestore.extract.stop import ExtractionStopped, clear_stop, raise_if_stop_requested
from tasks import interrupts


@pytest.fixture
def worker(monkeypatch):
    """This process set up as a pool worker is: the initializer's SIGINT and SIGTERM handlers installed."""
    monkeypatch.setattr(interrupts, "_in_worker", True)
    monkeypatch.setattr(interrupts, "_stopped_by", "Ctrl-C")
    previous = signal.signal(signal.SIGINT, interrupts._interrupt_running_body)
    previous_term = signal.signal(signal.SIGTERM, interrupts._stop_after_batch)
    yield
    signal.signal(signal.SIGINT, previous)
    signal.signal(signal.SIGTERM, previous_term)
    clear_stop()


class _ClosedWhenCollected:
    """Stands for the PyTables and h5py objects that close files in ``__del__``."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C arriving now: Python ignores what a finalizer raises


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed interrupt itself
def test_a_ctrl_c_swallowed_by_a_finalizer_still_stops_the_extraction(worker):
    def extraction():
        _ClosedWhenCollected()
        for _ in range(3):
            raise_if_stop_requested()  # the batch loop's check between batches
        return "ran to the end"

    with pytest.raises(interrupts.TaskStopped, match="extraction: stopped by Ctrl-C"):
        interrupts._run_body(extraction, (), {})


def test_an_error_raised_by_a_ctrl_c_is_a_stop_not_a_crash_to_retry(worker):
    def interrupted_import():
        try:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C landing in a C extension's module init...
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None  # ...which turns it into this (seen in CI)

    with pytest.raises(interrupts.TaskStopped, match="interrupted_import: stopped by Ctrl-C"):
        interrupts._run_body(interrupted_import, (), {})


def test_an_error_without_ctrl_c_stays_what_it_is(worker):
    def broken():
        raise ImportError("no module named nowhere")

    with pytest.raises(ImportError, match="nowhere"):
        interrupts._run_body(broken, (), {})


def test_after_ctrl_c_the_worker_starts_no_queued_task(worker):
    started = []
    with pytest.raises(interrupts.TaskStopped):
        interrupts._run_body(lambda: signal.raise_signal(signal.SIGINT), (), {})
    with pytest.raises(interrupts.TaskStopped, match="append: stopped by Ctrl-C"):
        interrupts._run_body(started.append, ("queued",), {})
    assert started == []


def test_ctrl_c_between_task_bodies_interrupts_nothing_and_stops_the_next(worker):
    signal.raise_signal(signal.SIGINT)  # an idle worker, or Prefect's bookkeeping around a body: nothing raised here
    with pytest.raises(interrupts.TaskStopped):
        interrupts._run_body(lambda: "done", (), {})


def test_a_cancel_lets_the_batch_finish_then_stops_the_extraction_and_the_queued_tasks(worker):
    batches, started = [], []

    def extraction():
        for batch in range(3):
            raise_if_stop_requested()  # the batch loop's check between batches
            if batch == 1:
                signal.raise_signal(signal.SIGTERM)  # the cancel, mid-batch: the batch goes on
            batches.append(batch)

    with pytest.raises(interrupts.TaskStopped, match="extraction: stopped by a cancel"):
        interrupts._run_body(extraction, (), {})
    assert batches == [0, 1]
    with pytest.raises(interrupts.TaskStopped, match="append: stopped by a cancel"):
        interrupts._run_body(started.append, ("queued",), {})
    assert started == []


def _batches_until_stopped(folder: str) -> None:
    """A task body in a real pool worker: batches, each checking for a stop as an extraction's loop
    does, until stopped; it leaves its pid, and one file per batch and then ``stopped``, in ``folder``."""
    (Path(folder) / "pid").write_text(str(os.getpid()))
    batch = 0
    try:
        while True:
            raise_if_stop_requested()
            (Path(folder) / f"batch-{batch}").touch()
            batch += 1
            time.sleep(0.05)
    except ExtractionStopped:
        (Path(folder) / "stopped").touch()
        raise


def _running(folder: Path) -> int:
    """The pid of the worker running ``_batches_until_stopped(folder)``, once it has done a batch."""
    deadline = time.monotonic() + 120
    while not (folder / "batch-0").exists():
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    return int((folder / "pid").read_text())


@contextmanager
def _pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool as the ``processes`` runner starts it (spawned workers, this module's
    initializer), shut down on leaving; a failed check kills its workers first, since one left
    batching would hold up the shutdown and the test process's exit."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=interrupts.handle_stops_in_worker)
    try:
        yield pool
    except BaseException:
        for process in list((pool._processes or {}).values()):
            process.kill()
        raise
    finally:
        pool.shutdown()


def test_a_cancel_stops_a_workers_task_after_its_batch_then_ends_the_worker_before_its_queued_task(tmp_path):
    # A cancel's SIGTERM ended a pool worker at once, mid-batch, saying nothing.
    running, queued = tmp_path / "running", tmp_path / "queued"
    running.mkdir(), queued.mkdir()
    with _pool(1) as pool:
        first = pool.submit(interrupts._run_body, _batches_until_stopped, (str(running),), {})
        second = pool.submit(interrupts._run_body, _batches_until_stopped, (str(queued),), {})
        pid = _running(running)
        worker = pool._processes[pid]
        os.kill(pid, signal.SIGTERM)
        stopped = first.exception(timeout=120)
        assert isinstance(stopped, interrupts.TaskStopped) and "stopped by a cancel" in str(stopped)
        assert (running / "stopped").exists()
        assert isinstance(second.exception(timeout=120), BrokenProcessPool) and not any(queued.iterdir())
    assert worker.exitcode == -signal.SIGTERM


def test_an_idle_worker_still_ends_on_sigterm_and_a_broken_pool_stops_the_busy_one_after_its_batch(tmp_path):
    # The pool SIGTERMs its workers when one of them dies: an idle worker must end then, and the
    # pool's shutdown, which waits for every worker, must not hang (the busy worker, once its task
    # had stopped, waited forever for the queue's lock, held by the idle worker that died).
    with _pool(2) as pool:
        busy = pool.submit(interrupts._run_body, _batches_until_stopped, (str(tmp_path),), {})
        idle_pid = pool.submit(os.getpid).result(timeout=120)  # a second worker, idle once this returns
        busy_process, idle = pool._processes[_running(tmp_path)], pool._processes[idle_pid]
        os.kill(idle_pid, signal.SIGTERM)
        assert isinstance(busy.exception(timeout=120), BrokenProcessPool)
        pool.shutdown()
        assert idle.exitcode == -signal.SIGTERM
        assert busy_process.exitcode == -signal.SIGTERM and (tmp_path / "stopped").exists()


def test_a_flow_run_clears_an_earlier_stop_also_where_sigint_is_ignored():
    # A background job (CI, nohup ... &) ignores SIGINT: no handler is installed, and a stop left
    # from an earlier run in the process must still not stop this one.
    from featurestore.extract.stop import request_stop, stop_requested
    from flows.stopping import ctrl_c_stops_tasks

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        request_stop()
        with ctrl_c_stops_tasks():
            assert not stop_requested()
    finally:
        signal.signal(signal.SIGINT, previous)
        clear_stop()


# A real SIGINT, sent the moment the command line first imports the named module: where a Ctrl-C
# typed in the first half second lands.
_INTERRUPTED_WHILE_IMPORTING = """
import os, runpy, signal, sys
module, root = sys.argv[1:]
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            os.kill(os.getpid(), signal.SIGINT)
sys.meta_path.insert(0, CtrlC())
sys.argv = ["featurestore", "ls", "--root", root]
runpy.run_module("featurestore.cli", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("module", ["typer", "pandas", "h5py"])
def test_ctrl_c_while_the_command_line_loads_is_one_line_not_a_traceback(module, tmp_path):
    # It printed a 15-30 line KeyboardInterrupt traceback through importlib.
    stopped = subprocess.run([sys.executable, "-c", _INTERRUPTED_WHILE_IMPORTING, module, str(tmp_path)],
                             capture_output=True, text=True, timeout=120,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert (stopped.returncode, stopped.stderr, stopped.stdout) == (130, "stopped: while starting; nothing was done\n", "")


# The same for `python -m flows.<flow>` itself: installed as sitecustomize, which Python imports at startup.
_CTRL_C_AT_FIRST_IMPORT = """
import os, signal, sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["CTRL_C_AT"]:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
sys.meta_path.insert(0, CtrlC())
"""


@pytest.mark.parametrize("flow", ["extract", "pipeline"])
def test_ctrl_c_while_a_flow_imports_prefect_is_one_line_not_a_traceback(flow, tmp_path):
    # `python -m flows.<flow>` printed a KeyboardInterrupt traceback through importlib and Prefect.
    (tmp_path / "sitecustomize.py").write_text(_CTRL_C_AT_FIRST_IMPORT)
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, CTRL_C_AT="prefect", PYTHONPATH=os.pathsep.join([str(tmp_path), str(repo)]))
    stopped = subprocess.run([sys.executable, "-m", f"flows.{flow}", "--root", str(tmp_path / "root")], cwd=repo,
                             env=env, capture_output=True, text=True, timeout=120,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Ended by Ctrl-C as before (a shell says 130), with one line.
    assert (stopped.returncode, stopped.stderr, stopped.stdout) == (-signal.SIGINT, "stopped: while starting; nothing "
                                                                    "was done\n", "")
