"""One Prefect API for a flow's process and every worker process it starts."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.settings import (
    PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings,
)

from featurestore.errors import FeatureStoreError


class TemporaryServerDidNotStart(FeatureStoreError):
    """The temporary Prefect server a flow starts did not answer in time."""


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
        except RuntimeError as error:
            raise _did_not_start(server) from error
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        with exported_api(server.api_url) as url:
            yield url
    finally:
        _send_pending_logs_and_events()
        server.stop()


def _did_not_start(server) -> TemporaryServerDidNotStart:
    # Prefect's own error is a traceback ending in the server's whole output; a first start, which
    # creates the database, outlasted the default 20 s on a busy 2-core machine.
    process = server.server_process
    ended = "" if process is None or process.poll() is None else f", and its process exited with code {process.returncode}"
    waited = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    return TemporaryServerDidNotStart(
        f"the temporary Prefect server did not answer within {waited} s{ended}; run again (a first start creates "
        "its database), allow it longer with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start one with "
        "`prefect server start --host 127.0.0.1` and export PREFECT_API_URL=http://127.0.0.1:4200/api")


def _send_pending_logs_and_events(timeout: float = 5.0) -> None:
    """Deliver the run logs and events Prefect still queues (it sends them in the background)
    while their server is up: sent after it stops, they retry a dead address for a minute."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)
