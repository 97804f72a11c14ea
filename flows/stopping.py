"""Ctrl-C and cancels, in a flow's own process, stopping the extract tasks of its run after their batch.

This is the flow process's half; ``tasks.interrupts`` is the half that runs inside each worker
process of the ``processes`` runner. Both end in the library's stop request
(``featurestore.extract.stop``), which an extraction checks between batches.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from prefect.exceptions import TerminationSignal
from prefect.task_runners import TaskRunner

from featurestore.extract.stop import clear_stop, request_stop


@runtime_checkable
class StopsWorkers(Protocol):
    """A task runner whose worker processes a cancel does not reach by itself."""

    def stop_workers(self) -> None:
        """Pass the stop on to the worker processes."""


@contextmanager
def cancel_stops_tasks(runner: TaskRunner) -> Iterator[TaskRunner]:
    """``runner`` entered; a cancel or a Ctrl-C raised inside stops the extract tasks running on it
    after their current batch, in threads as in process-pool workers, however the flow was started."""
    stopping = False
    try:
        with runner as entered:
            try:
                yield entered
            except (TerminationSignal, KeyboardInterrupt):
                # A cancel (`prefect flow-run cancel`, Cancel in the UI) is a SIGTERM, raised here by Prefect's
                # handler. Leaving this block, the runner waits for its tasks: an extraction ran its whole pass,
                # or was SIGKILLed 30 s later saying nothing. The handler stays Prefect's own, because the
                # worker's cancel is acknowledged only while it is installed (else the run ends Crashed).
                # Ctrl-C reaches here as KeyboardInterrupt where no `ctrl_c_stops_tasks` runs (`prefect serve`,
                # a flow called from Python): the extraction ran its whole pass, then the run Crashed anyway.
                stopping = True
                request_stop()
                if isinstance(entered, StopsWorkers):
                    entered.stop_workers()
                raise
    finally:
        if stopping:
            # Leaving the runner waited for its tasks to stop: the next run in this process (a notebook's,
            # a test session's) must not stop at its first batch.
            clear_stop()


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
