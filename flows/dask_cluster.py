"""The Dask cluster named by ``$FEATURESTORE_DASK_ADDRESS``, checked before a flow relies on it.

A scheduler that did not answer cost 30 s and a 154-line traceback naming neither the variable nor
what to do. A scheduler with no worker, or whose workers could not import this checkout's tasks,
hung the flow for good, with the reason only in the worker's own log.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from prefect_dask import DaskTaskRunner

from featurestore.errors import InvalidOption, first_line
from flows.runners import ENV_DASK_ADDRESS

#: seconds a flow waits for the cluster's first worker (``$FEATURESTORE_DASK_WAIT`` to change)
ENV_DASK_WAIT = "FEATURESTORE_DASK_WAIT"
DEFAULT_WAIT_SECONDS = 60.0
#: what a worker must import to run the flows' tasks: the same checkout as the flow
TASK_IMPORTS = "import tasks.extract, tasks.evaluate"
CHECKOUT = Path(__file__).resolve().parents[1]
_UNSET = f"or unset {ENV_DASK_ADDRESS} for a local cluster"


def check_scheduler_answers(address: str, timeout: float = 5.0) -> None:
    """One line if nothing listens at ``address`` (``tcp://HOST:PORT``, ``tls://...``, or ``HOST:PORT``,
    which Dask reads as tcp)."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return  # another transport (ucx, inproc): Dask itself says what it needs
    try:
        port = parts.port or 8786  # Dask's default scheduler port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise InvalidOption(f"{ENV_DASK_ADDRESS}={address}: not a Dask scheduler address; give one like "
                            f"tcp://HOST:8786, {_UNSET}")
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as error:
        raise InvalidOption(f"the Dask scheduler at {address} (${ENV_DASK_ADDRESS}) does not answer "
                            f"({error.strerror or error}); start it or fix the address, {_UNSET}") from None


def _wait_seconds() -> float:
    value = os.environ.get(ENV_DASK_WAIT, str(DEFAULT_WAIT_SECONDS))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise InvalidOption(f"{ENV_DASK_WAIT}={value}: give the seconds to wait for a Dask worker, 0 or more")
    return seconds


def check_workers(client, address: str) -> None:
    """One line unless the cluster has a worker within ``$FEATURESTORE_DASK_WAIT`` seconds and
    every worker imports this checkout's tasks."""
    wait = _wait_seconds()
    try:
        client.wait_for_workers(1, timeout=wait)
    except TimeoutError:
        raise InvalidOption(f"no Dask worker joined the scheduler at {address} (${ENV_DASK_ADDRESS}) within "
                            f"{wait:g} s: start one with `dask worker {address}` where this checkout's code "
                            f"imports (see docs/scaling.md), {_UNSET}") from None
    # exec is a builtin: a worker unpickles it without this checkout, then reports the import's error.
    for worker, outcome in client.run(exec, TASK_IMPORTS, on_error="return").items():
        if isinstance(outcome, BaseException):
            raise InvalidOption(f"the Dask worker {worker} cannot import this checkout's tasks "
                                f"({first_line(outcome)}): start it with PYTHONPATH={CHECKOUT} "
                                f"(or `pip install -e {CHECKOUT}`), {_UNSET}")


class ExternalDaskRunner(DaskTaskRunner):
    """Prefect's Dask runner on an existing cluster, which checks the cluster as it starts (``check_workers``)."""

    def __enter__(self):
        super().__enter__()
        try:
            check_workers(self.client, self.address)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self
