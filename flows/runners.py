"""Task runners by name, one Prefect API shared by every worker process, Ctrl-C and cancellation
reaching task threads, and the checks every flow makes of its list parameters.

Flows take the task runner as a plain string parameter (so a deployment run can pick it with
``-p task_runner=dask``) and run their tasks on it with ``tasks_run_on``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from featurestore.errors import InvalidOption
from featurestore.extract.stop import clear_stop, request_stop
from featurestore.registry import Registry
from tasks.interrupts import handle_stops_in_worker

ENV_DASK_ADDRESS = "FEATURESTORE_DASK_ADDRESS"


def _dask(workers: int) -> TaskRunner:
    """Dask: the cluster at ``$FEATURESTORE_DASK_ADDRESS`` if set, else a local multi-process cluster."""
    from prefect_dask import DaskTaskRunner

    address = os.environ.get(ENV_DASK_ADDRESS)
    if address:
        from flows.dask_cluster import ExternalDaskRunner, check_scheduler_answers

        check_scheduler_answers(address)
        return ExternalDaskRunner(address=address)
    # A local cluster's scheduler, nannies and workers print ~70 INFO lines of banners around each
    # run; their warnings still show. Worker processes take the level from the environment.
    level = os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(level.upper())
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


class _ProcessPool(ProcessPoolTaskRunner):
    """Prefect's process pool, whose workers start with SIGINT blocked until their initializer
    (``handle_stops_in_worker``) has put its handler in place and unblocks it, and which passes a
    cancel on to them (``stop_workers``).

    Prefect submits to the pool, and so starts its workers, from threads of its own, and a
    worker inherits the signal mask of the thread that starts it. A Ctrl-C while a worker was
    still importing printed that import's KeyboardInterrupt traceback; now it waits for the handler.
    """

    def _resolve_futures_and_submit(self, *args, **kwargs):
        # Only these submitting threads block it: the main thread still takes the Ctrl-C.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        return super()._resolve_futures_and_submit(*args, **kwargs)

    def stop_workers(self) -> None:
        """Send each worker SIGTERM: one running an extraction stops it after its current batch, an
        idle one ends (``tasks.interrupts``). ``prefect serve`` sends a cancel's SIGTERM to the flow's
        process alone, and leaving the pool waits for its running tasks: they ran their whole pass."""
        processes = getattr(self._executor, "_processes", None) or {}
        for process in list(processes.values()):  # the pool's manager thread removes those that end
            process.terminate()


@dataclass(frozen=True)
class TaskRunnerSpec:
    """A task runner: ``build(workers)`` makes it run that many tasks at once. ``starts_processes()``
    says whether it starts a process per worker here, which bounds ``workers``: ``--workers 100000``
    hung starting them. Threads start one per task submitted, and a Dask cluster at
    ``$FEATURESTORE_DASK_ADDRESS`` has the workers it has: neither starts ``workers`` of anything."""

    build: Callable[[int], TaskRunner]
    starts_processes: Callable[[], bool] = lambda: False


#: task runners by name, the values of every flow's ``task_runner`` parameter
TASK_RUNNERS: Registry[TaskRunnerSpec] = Registry("task runner")
TASK_RUNNERS.register("threads", TaskRunnerSpec(lambda workers: ThreadPoolTaskRunner(max_workers=workers)))
TASK_RUNNERS.register("processes", TaskRunnerSpec(
    lambda workers: _ProcessPool(max_workers=workers, initializer=handle_stops_in_worker), lambda: True))
TASK_RUNNERS.register("dask", TaskRunnerSpec(_dask, lambda: not os.environ.get(ENV_DASK_ADDRESS)))

#: worker processes per core beyond which a runner is refused (tasks wait on I/O at most that much)
WORKERS_PER_CORE = 4


def check_given(parameter: str, names: list[str] | None, noun: str, option: str, left_out: str = "") -> None:
    """One line for an empty list given as ``parameter`` (a deployment's ``-p models=[]``), which a
    flow read as "every one" or as nothing to do, and then reported success; the command line refuses
    empty lists the same way. ``None`` is the parameter left out: the flow's default, which
    ``left_out`` names where the line should offer it."""
    if names is not None and not names:
        raise InvalidOption(f"{parameter}=[]: give at least one {noun} ({option} NAME)"
                            + (f", or leave {parameter} out for {left_out}" if left_out else ""))


def make_task_runner(name: str, workers: int = 2) -> TaskRunner:
    """The task runner called ``name`` running ``workers`` tasks at once; one line for a bad name, for
    fewer than one worker, or for more worker processes than ``WORKERS_PER_CORE`` per core where it
    starts one per worker (the runners would raise a traceback only when they start, or never start)."""
    spec = TASK_RUNNERS.get(name)
    if workers < 1:
        raise InvalidOption(f"--workers {workers}: a flow runs at least 1 task at once; pass --workers 1 or more")
    bound = WORKERS_PER_CORE * (os.cpu_count() or 1)
    if spec.starts_processes() and workers > bound:
        raise InvalidOption(f"--workers {workers}: the {name} runner starts a process per worker, at most {bound} "
                            f"here ({WORKERS_PER_CORE} per CPU core); pass --workers {bound} or fewer")
    return spec.build(workers)


@contextmanager
def tasks_run_on(task_runner: str, workers: int) -> Iterator[TaskRunner]:
    """Inside a running flow: the tasks it submits here run on the runner called ``task_runner``,
    ``workers`` at once.

    Prefect fixes a flow's own runner where the flow is defined, and a deployment runs the flow as
    defined: its ``-p task_runner=... -p workers=...`` reached no runner, and every task of an
    evaluate deployment ran at once on Prefect's default pool. The flow's run context is entered
    again with this runner in place of its own, as Prefect's engine enters it with the flow's.
    A cancel or a Ctrl-C stops the extract tasks running here after their current batch, in threads
    as in process-pool workers, however the flow was started.
    """
    from prefect.context import FlowRunContext
    from prefect.exceptions import TerminationSignal

    context = FlowRunContext.get()
    stopping = False
    try:
        # A run that Prefect's runner started (`prefect serve`, a worker) with no API in its environment
        # reports to a temporary server of its own, and each pool worker started another: they get its URL.
        with _exported(PREFECT_API_URL.value() or str(context.client.api_url)), \
                make_task_runner(task_runner, workers) as runner, context.model_copy(update={"task_runner": runner}):
            try:
                yield runner
            except (TerminationSignal, KeyboardInterrupt):
                # A cancel (`prefect flow-run cancel`, Cancel in the UI) is a SIGTERM, raised here by Prefect's
                # handler. Leaving this block, the runner waits for its tasks: an extraction ran its whole pass,
                # or was SIGKILLed 30 s later saying nothing. The handler stays Prefect's own, because the
                # worker's cancel is acknowledged only while it is installed (else the run ends Crashed).
                # Ctrl-C reaches here as KeyboardInterrupt where no `ctrl_c_stops_tasks` runs (`prefect serve`,
                # a flow called from Python): the extraction ran its whole pass, then the run Crashed anyway.
                stopping = True
                request_stop()
                if isinstance(runner, _ProcessPool):
                    runner.stop_workers()
                raise
    finally:
        if stopping:
            # Leaving the runner waited for its tasks to stop: the next run in this process (a notebook's,
            # a test session's) must not stop at its first batch.
            clear_stop()


@contextmanager
def _exported(url: str) -> Iterator[str]:
    """``PREFECT_API_URL`` set to ``url`` in this process's settings and environment (for children)."""
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        if previous is None:
            del os.environ["PREFECT_API_URL"]
        else:
            os.environ["PREFECT_API_URL"] = previous


@contextmanager
def shared_api() -> Iterator[str]:
    """One Prefect API for this process and every worker process, which outlives a Ctrl-C.

    The configured API (environment, profile or test harness) is exported to the workers: without
    one, each process-pool or Dask worker would start a temporary server of its own (slow, and their
    runs invisible to each other). With none configured, one temporary server is started here for
    the duration, with SIGINT blocked: a terminal's Ctrl-C reaches its whole process group, and a
    server stopped by it left the stopping flow retrying its API for minutes, with tracebacks,
    instead of recording the crash and exiting.
    """
    url = PREFECT_API_URL.value()
    if url:
        with _exported(url):
            yield url
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    # The server process inherits the blocked SIGINT and so stops only when stopped below (SIGTERM).
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        try:
            server.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        with _exported(server.api_url) as url:
            yield url
    finally:
        _send_pending_logs_and_events()
        server.stop()


def _send_pending_logs_and_events(timeout: float = 5.0) -> None:
    """Deliver the run logs and events Prefect still queues (it sends them in the background)
    while their server is up: sent after it stops, they retry a dead address for a minute."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)


@contextmanager
def ctrl_c_stops_tasks() -> Iterator[None]:
    """While inside, Ctrl-C also stops the extract tasks running in worker threads.

    SIGINT raises ``KeyboardInterrupt`` in the main thread only, and Prefect, leaving the flow,
    waits for the running tasks: a task thread would finish its whole pass first. The handler
    installed here asks the library to stop after the current batch, then raises as before; the
    task thread then keeps its committed rows and logs how to resume before the process exits.
    Process-pool workers get the terminal's SIGINT themselves (``tasks.interrupts``). Outside the main thread, or if SIGINT
    is ignored (a background job), nothing is installed.
    """
    clear_stop()  # a stop requested for an earlier run in this process is not meant for this one
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is signal.SIG_IGN:
        yield
        return

    def stop_then_interrupt(signum, frame):
        request_stop()  # first, so the task thread already has it when the main thread unwinds
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop_then_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        clear_stop()
