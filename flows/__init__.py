"""Prefect flows: ``ingest``, ``extract``, ``evaluate`` and ``feature-pipeline``.

Bad input raises a ``FeatureStoreError`` whose one line says what is wrong and what to do.
Prefect logs every failed run twice: the exception with its traceback (some 80 lines through its
own engine for a missing folder), then ``Finished in state Failed('... <the line>')``. For these
errors only the second stays in Prefect's flow- and task-run logs, so the line is said once per
run, while any other exception keeps its traceback.
"""

from __future__ import annotations

import logging
import sys

from featurestore.errors import STOPPED_WHILE_STARTING, FeatureStoreError

#: the loggers Prefect's engines report failed runs on
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class ExpectedErrorsInOneLine(logging.Filter):
    """Drops a log record whose exception is a ``FeatureStoreError``: the run's closing state,
    logged next, carries the same line without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], FeatureStoreError))


for _name in RUN_LOGGERS:
    logging.getLogger(_name).addFilter(ExpectedErrorsInOneLine())


def _ctrl_c_in_one_line(hook):
    """``hook`` (an ``excepthook``) saying ``STOPPED_WHILE_STARTING`` for an uncaught Ctrl-C instead
    of its traceback; the process still ends as Ctrl-C ends it (exit status 130 in a shell)."""
    def excepthook(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            print(STOPPED_WHILE_STARTING, file=sys.stderr)
        else:
            hook(kind, value, traceback)
    return excepthook


if sys.argv[:1] == ["-m"]:
    # `python -m flows.<flow>`: Python imports this package to find the flow's module (argv[0] is "-m"
    # meanwhile), then runs it. Its main() handles Ctrl-C itself, so one that reaches the top came
    # while the module imported Prefect (a second or two), and printed a traceback through importlib.
    sys.excepthook = _ctrl_c_in_one_line(sys.excepthook)
