"""Ctrl-C reaching tasks that run in process-pool workers, without hanging the flow.

A terminal's Ctrl-C sends SIGINT to every process of its foreground group: the flow's process
and each worker of the ``processes`` task runner. Prefect 3.8.8 passes a worker's
``KeyboardInterrupt`` back to the flow process, where it escapes a future callback and kills the
pool's manager thread; the process then waits forever at exit for workers nobody tells to quit.

So each pool worker runs ``handle_ctrl_c_in_worker`` first (the runner's initializer): there,
Ctrl-C interrupts a running task body only (never Prefect's bookkeeping around it), asks
extractions to stop after their batch, and keeps the worker from starting the tasks still
queued; every task is declared with this module's ``task``, whose body turns that interrupt
into ``TaskStopped``, an ordinary exception that crosses the process boundary as a failed task. Stores keep their committed rows as after any Ctrl-C. Outside pool workers (threads
runner, plain calls) the body is left alone: ``KeyboardInterrupt`` behaves as usual.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable

from prefect import task as prefect_task

from featurestore.errors import FeatureStoreError
from featurestore.extract.stop import raise_if_stop_requested, request_stop, stop_requested

_in_worker = False
_body_running = False


class TaskStopped(FeatureStoreError):
    """A task body in a pool worker stopped by Ctrl-C (never retried: the user asked to stop)."""


def _interrupt_running_body(signum, frame) -> None:
    # Kept for the pool's life (it ends with the flow run): the tasks queued behind this one must
    # not start. It is also what an extraction's batch loop checks, so an extraction stops after
    # its batch even when the interrupt below lands in a finalizer (PyTables and h5py close files
    # in __del__), where Python swallows it.
    request_stop()
    if _body_running:
        raise KeyboardInterrupt


def handle_ctrl_c_in_worker() -> None:
    """Process-pool initializer: from now on Ctrl-C in this worker interrupts a running task body
    (never Prefect's bookkeeping around it), and the worker starts no further body.

    A worker that inherited an ignored SIGINT (the flow runs as a background job) keeps ignoring it.
    The pool (``flows.runners``) starts workers with SIGINT blocked, so that a Ctrl-C while one
    still imports waits for this handler; it is unblocked here, once the handler is in place.
    """
    global _in_worker
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return
    _in_worker = True
    signal.signal(signal.SIGINT, _interrupt_running_body)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _run_body(fn: Callable, args: tuple, kwargs: dict):
    global _body_running
    if not _in_worker:
        return fn(*args, **kwargs)
    _body_running = True
    try:
        raise_if_stop_requested()  # Ctrl-C already reached this worker: a queued task does not start
        return fn(*args, **kwargs)
    except KeyboardInterrupt as interrupt:
        raise TaskStopped(f"{fn.__name__}: stopped by Ctrl-C") from interrupt
    except Exception as error:
        # An interrupt can surface as another error: one landing in a C extension's import comes
        # out as ImportError('initialization failed'). After Ctrl-C it is a stop, not a crash to retry.
        if stop_requested():
            raise TaskStopped(f"{fn.__name__}: stopped by Ctrl-C") from error
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
    """``prefect.task(**options)`` over a body that a pool worker's Ctrl-C stops cleanly (see above)."""
    return lambda fn: prefect_task(**options)(_stoppable(fn))
