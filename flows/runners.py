"""Task runners by name.

Flows take the task runner as a plain string parameter (so a deployment run can pick it with
``-p task_runner=dask``) and run their tasks on it with ``tasks_run_on``. A run checks its runner
once, before it starts (``runner_checked_once``); ``check_task_runner`` builds nothing.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from prefect.settings import PREFECT_API_URL
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from featurestore.errors import InvalidOption
from featurestore.registry import Registry
from flows.api import exported_api
from flows.stopping import cancel_stops_tasks
from tasks.interrupts import handle_stops_in_worker

ENV_DASK_ADDRESS = "FEATURESTORE_DASK_ADDRESS"


def _check_dask() -> None:
    """One line if ``$FEATURESTORE_DASK_ADDRESS`` is set and no Dask scheduler answers there: the
    runner connecting to it took 30 s, then a traceback."""
    address = os.environ.get(ENV_DASK_ADDRESS)
    if address:
        from flows.dask_cluster import check_scheduler_answers

        check_scheduler_answers(address)


def _dask(workers: int) -> TaskRunner:
    """Dask: the cluster at ``$FEATURESTORE_DASK_ADDRESS`` if set, else a local multi-process cluster."""
    from prefect_dask import DaskTaskRunner

    address = os.environ.get(ENV_DASK_ADDRESS)
    if address:
        from flows.dask_cluster import ExternalDaskRunner

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
    ``$FEATURESTORE_DASK_ADDRESS`` has the workers it has: neither starts ``workers`` of anything.
    ``check()`` says in one line what this machine lacks to use it, before a run starts."""

    build: Callable[[int], TaskRunner]
    starts_processes: Callable[[], bool] = lambda: False
    check: Callable[[], None] = lambda: None


#: task runners by name, the values of every flow's ``task_runner`` parameter
TASK_RUNNERS: Registry[TaskRunnerSpec] = Registry("task runner")
TASK_RUNNERS.register("threads", TaskRunnerSpec(lambda workers: ThreadPoolTaskRunner(max_workers=workers)))
TASK_RUNNERS.register("processes", TaskRunnerSpec(
    lambda workers: _ProcessPool(max_workers=workers, initializer=handle_stops_in_worker), lambda: True))
TASK_RUNNERS.register("dask", TaskRunnerSpec(_dask, lambda: not os.environ.get(ENV_DASK_ADDRESS), _check_dask))

#: worker processes per core beyond which a runner is refused (tasks wait on I/O at most that much)
WORKERS_PER_CORE = 4

#: the (name, workers) that the run being made here has checked already (``runner_checked_once``)
_checked_for_this_run: ContextVar[tuple[str, int] | None] = ContextVar("checked_task_runner", default=None)


def check_task_runner(name: str, workers: int) -> None:
    """One line for a bad name, for fewer than one worker, for more worker processes than
    ``WORKERS_PER_CORE`` per core where it starts one per worker (the runners would raise a traceback
    only when they start, or never start), or for what the runner's ``check`` finds missing (a Dask
    scheduler that does not answer). Builds no runner and changes nothing in this process; inside
    ``runner_checked_once`` for the same runner, checks nothing again."""
    if _checked_for_this_run.get() == (name, workers):
        return
    spec = TASK_RUNNERS.get(name)
    if workers < 1:
        raise InvalidOption(f"--workers {workers}: a flow runs at least 1 task at once; pass --workers 1 or more")
    bound = WORKERS_PER_CORE * (os.cpu_count() or 1)
    if spec.starts_processes() and workers > bound:
        raise InvalidOption(f"--workers {workers}: the {name} runner starts a process per worker, at most {bound} "
                            f"here ({WORKERS_PER_CORE} per CPU core); pass --workers {bound} or fewer")
    spec.check()


@contextmanager
def runner_checked_once(name: str, workers: int) -> Iterator[None]:
    """``check_task_runner`` now, and not again inside: the flows run here (the pipeline's extract and
    evaluate too) and their runners rely on it, so a Dask scheduler is probed once per run, before it
    starts, rather than by every check and runner of the run."""
    check_task_runner(name, workers)
    token = _checked_for_this_run.set((name, workers))
    try:
        yield
    finally:
        _checked_for_this_run.reset(token)


def make_task_runner(name: str, workers: int = 2) -> TaskRunner:
    """The task runner called ``name`` running ``workers`` tasks at once, checked (``check_task_runner``)."""
    check_task_runner(name, workers)
    return TASK_RUNNERS.get(name).build(workers)


@contextmanager
def tasks_run_on(task_runner: str, workers: int) -> Iterator[TaskRunner]:
    """Inside a running flow: the tasks it submits here run on the runner called ``task_runner``,
    ``workers`` at once.

    Prefect fixes a flow's own runner where the flow is defined, and a deployment runs the flow as
    defined: its ``-p task_runner=... -p workers=...`` reached no runner, and every task of an
    evaluate deployment ran at once on Prefect's default pool. The flow's run context is entered
    again with this runner in place of its own, as Prefect's engine enters it with the flow's.
    A cancel or a Ctrl-C stops the extract tasks running here after their current batch
    (``flows.stopping.cancel_stops_tasks``).
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    # A run that Prefect's runner started (`prefect serve`, a worker) with no API in its environment
    # reports to a temporary server of its own, and each pool worker started another: they get its URL.
    with exported_api(PREFECT_API_URL.value() or str(context.client.api_url)), \
            cancel_stops_tasks(make_task_runner(task_runner, workers)) as runner, \
            context.model_copy(update={"task_runner": runner}):
        yield runner
