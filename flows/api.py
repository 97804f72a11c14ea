"""One Prefect API for a flow's process and every worker process it starts."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.settings import PREFECT_API_URL, temporary_settings


@contextmanager
def exported_api(url: str) -> Iterator[str]:
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
        with exported_api(url):
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
        with exported_api(server.api_url) as url:
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
