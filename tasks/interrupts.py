"""Ctrl-C and cancels reaching tasks that run in process-pool workers, without hanging the flow.

A terminal's Ctrl-C sends SIGINT to every process of its foreground group: the flow's process
and each worker of the ``processes`` task runner. Prefect 3.8.8 passes a worker's
``KeyboardInterrupt`` back to the flow process, where it escapes a future callback and kills the
pool's manager thread; the process then waits forever at exit for workers nobody tells to quit.

So each pool worker runs ``handle_stops_in_worker`` first (the runner's initializer): there,
Ctrl-C interrupts a running task body only (never Prefect's bookkeeping around it), asks
extractions to stop after their batch, and keeps the worker from starting the tasks still
queued; every task is declared with this module's ``task``, whose body turns that interrupt
into ``TaskStopped``, an ordinary exception that crosses the process boundary as a failed task.
Stores keep their committed rows as after any Ctrl-C. Outside pool workers (threads runner,
plain calls) the body is left alone: ``KeyboardInterrupt`` behaves as usual.

A cancelled run (``prefect flow-run cancel``) gets SIGTERM instead: from a Prefect worker, in every
process of the run's group; from ``serve``, in the flow's process alone, which passes it on to its
pool workers (``flows.stopping``). Its default action ended a worker at once, mid-batch, saying nothing
and leaving its store's lock file. In a worker running a task it now asks the extraction to stop
after its current batch, which then ends in ``TaskStopped`` as after Ctrl-C (other task bodies run
to their end, as they do in threads); once the task has reported, the worker ends as SIGTERM ends
it, starting no queued task. A worker waiting for its next task still ends at once: the pool
itself SIGTERMs its workers when it breaks, and waits for them.
"""

from __future__ import annotations

import functools
import multiprocessing.queues
import signal
from collections.abc import Callable
from concurrent.futures.process import _process_worker

from prefect import task as prefect_task

from featurestore.errors import FeatureStoreError
from featurestore.extract.stop import raise_if_stop_requested, request_stop, stop_requested

_in_worker = False
_body_running = False
_stopped_by = "Ctrl-C"


class TaskStopped(FeatureStoreError):
    """A task body in a pool worker stopped by Ctrl-C or a cancel (never retried: the user asked to stop)."""


def _stop(cause: str) -> None:
    # Kept for the pool's life (it ends with the flow run): the tasks queued behind this one must
    # not start. It is also what an extraction's batch loop checks.
    global _stopped_by
    if not stop_requested():
        _stopped_by = cause
    request_stop()


def _interrupt_running_body(signum, frame) -> None:
    # The stop also ends an extraction after its batch when the interrupt below lands in a finalizer
    # (PyTables and h5py close files in __del__), where Python swallows it.
    _stop("Ctrl-C")
    if _body_running:
        raise KeyboardInterrupt


def _end_as_sigterm_does(*args, **kwargs) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)


def _stop_after_batch(signum, frame) -> None:
    # Whether the pool's loop (``_process_worker``) was waiting for a task or running one when the
    # signal came is told by what it was calling; outside that loop (not a pool worker) only a stop is asked.
    inner = None
    while frame is not None and frame.f_code is not _process_worker.__code__:
        inner, frame = frame, frame.f_back
    if frame is not None and (inner is None or inner.f_code is multiprocessing.queues.Queue.get.__code__):
        # Waiting for a task: ended at once, as before. The pool SIGTERMs its workers when it breaks.
        _end_as_sigterm_does()
    # Inside a task, Prefect's bookkeeping included: not raised into it. An extraction stops after its
    # current batch, whose rows it commits, and the task reports its end to Prefect and to the pool.
    _stop("a cancel")
    if frame is not None:
        # Then the worker ends where it would wait for its next task. After the pool broke, that wait
        # never ends: the worker that died waiting held the task queue's lock, and the pool's shutdown
        # waits for this worker.
        frame.f_locals["call_queue"].get = _end_as_sigterm_does


def handle_stops_in_worker() -> None:
    """Process-pool initializer: from now on Ctrl-C in this worker interrupts a running task body
    (never Prefect's bookkeeping around it), a cancel's SIGTERM stops a running extraction after its
    current batch, and after either the worker starts no further body.

    A SIGTERM still ends the worker: at once if it waits for a task, else once its task has
    reported. A worker that inherited an ignored SIGINT (the flow runs as a background job) keeps
    ignoring it, and likewise SIGTERM.
    The pool (``flows.runners``) starts workers with SIGINT blocked, so that a Ctrl-C while one
    still imports waits for this handler; it is unblocked here, once the handler is in place.
    """
    global _in_worker
    _in_worker = True
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _stop_after_batch)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupt_running_body)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _run_body(fn: Callable, args: tuple, kwargs: dict):
    global _body_running
    if not _in_worker:
        return fn(*args, **kwargs)
    _body_running = True
    try:
        raise_if_stop_requested()  # a stop already reached this worker: a queued task does not start
        return fn(*args, **kwargs)
    except KeyboardInterrupt as interrupt:
        raise TaskStopped(f"{fn.__name__}: stopped by {_stopped_by}") from interrupt
    except Exception as error:
        # An interrupt can surface as another error: one landing in a C extension's import comes
        # out as ImportError('initialization failed'). After a stop it is a stop, not a crash to retry.
        if stop_requested():
            raise TaskStopped(f"{fn.__name__}: stopped by {_stopped_by}") from error
        raise
    finally:
        _body_running = False


def _stoppable(fn: Callable) -> Callable:
    # The body only calls the module-level _run_body: the pool pickles a task's function by value,
    # with a copy of the globals it names, while _run_body travels by reference and so sees the
    # flags this worker's initializer set.
    @functools.wraps(fn)
    def body(*args, **kwargs):
        return _run_body(fn, args, kwargs)

    return body


def task(**options) -> Callable[[Callable], object]:
    """``prefect.task(**options)`` over a body that a pool worker's Ctrl-C or cancel stops cleanly (see above)."""
    return lambda fn: prefect_task(**options)(_stoppable(fn))
