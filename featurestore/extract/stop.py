"""Stopping an extraction that runs in another thread.

Ctrl-C raises ``KeyboardInterrupt`` in the main thread only. An ``extract`` running in a worker
thread (a Prefect task under the threads task runner) never sees it and would finish its pass.
So the main thread's SIGINT handler calls ``request_stop`` (as does a flow that Prefect cancels:
``flows.stopping.cancel_stops_tasks``), and the batch loop, between batches,
raises ``ExtractionStopped`` (a ``KeyboardInterrupt``) in the extracting thread itself: the stores
keep their committed rows and say how to resume, exactly as after Ctrl-C in the main thread.
"""

from __future__ import annotations

import threading

_requested = threading.Event()

#: set on the log record of a line saying what a stop kept of a store, which the extraction also
#: adds to the stop's notes (``featurestore extract`` prints those rather than the log record)
STOP_LINE = "featurestore_stop_line"


class ExtractionStopped(KeyboardInterrupt):
    """Raised in the extracting thread after ``request_stop``; handled like Ctrl-C there."""


def request_stop() -> None:
    """Ask every extraction running in this process to stop after its current batch.

    Safe from a signal handler or any thread. The request holds until ``clear_stop``, which
    whoever installed the handler calls when its run starts and ends.
    """
    _requested.set()


def clear_stop() -> None:
    """Forget a stop request, so that one stop does not stop later runs in the same process."""
    _requested.clear()


def stop_requested() -> bool:
    """Whether ``request_stop`` was called since the last ``clear_stop``."""
    return _requested.is_set()


def raise_if_stop_requested() -> None:
    """Raise ``ExtractionStopped`` if ``request_stop`` was called since the last ``clear_stop``."""
    if stop_requested():
        raise ExtractionStopped("extraction stopped on request (Ctrl-C or a cancelled run)")
