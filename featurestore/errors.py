"""Errors featurestore raises on bad input.

Every message is one line that names the file or value, the problem, and what to do.
The CLI prints ``str(error)`` and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class FeatureStoreError(Exception):
    """Base class: a problem the user can fix, described in one line."""

    exit_code = 1


class InvalidName(FeatureStoreError, ValueError):
    """A dataset, model or classifier name that is unknown or unsafe."""

    exit_code = 2


class InvalidOption(FeatureStoreError, ValueError):
    """An option value nothing can run with (a batch size below 1, a precision the runtime lacks)."""

    exit_code = 2


class RootNotFound(FeatureStoreError):
    """A command that only reads was pointed at a featurestore root that does not exist."""


class RootNotWritable(FeatureStoreError):
    """The featurestore root cannot be written."""


class FileLocksUnsupported(RootNotWritable):
    """The featurestore root is on a file system whose file locks fail (``flock`` gives ENOSYS, ENOLCK
    or EOPNOTSUPP): no writer there could keep another off a store, so none writes."""


class StoreNotFound(FeatureStoreError, FileNotFoundError):
    """No store exists for the requested (dataset, model)."""


class StoreCorrupt(FeatureStoreError):
    """The file is not a readable featurestore store (truncated, not HDF5, missing fields)."""


class StoreSchemaTooNew(FeatureStoreError):
    """The store was written by a newer featurestore than this one."""


class StoreLocked(FeatureStoreError):
    """Another process is writing the store."""


class StoreConflict(FeatureStoreError):
    """A store exists but was built from other inputs (its fingerprint differs)."""


class StoreStale(StoreConflict):
    """A store exists but was built from an earlier manifest of its dataset (ingested again since)."""


class StoreIncomplete(FeatureStoreError):
    """The store's extraction has not finished."""


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless one, for a message: ``1 row``, ``2 rows``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def first_line(error: BaseException, *, named: bool = True) -> str:
    """The first line of an exception's message for a one-line error report, after the exception's
    type name where ``named``; the type name alone when the message is empty."""
    # str(KeyError) quotes its message: the bare message reads the same as any other exception's
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    lines = str(message).strip().splitlines()
    if not lines:
        return type(error).__name__
    return f"{type(error).__name__}: {lines[0]}" if named else lines[0]


@contextmanager
def exit_on_error() -> Iterator[None]:
    """For program entry points: a ``FeatureStoreError`` becomes ``error: <one line>`` on stderr
    and its exit code, without a traceback."""
    try:
        yield
    except FeatureStoreError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


#: what a program says when Ctrl-C stops it while it still imports its libraries
STOPPED_WHILE_STARTING = "stopped: while starting; nothing was done"


def stopped_while_starting() -> None:
    """Say ``STOPPED_WHILE_STARTING`` on stderr and exit 130, as a command stopped by Ctrl-C exits."""
    print(STOPPED_WHILE_STARTING, file=sys.stderr)
    sys.exit(130)
