"""Prefect flows: ``ingest``, ``extract``, ``evaluate`` and ``feature-pipeline``.

Bad input raises a ``FeatureStoreError`` whose one line says what is wrong and what to do.
Prefect logs every failed run twice: the exception with its traceback (some 80 lines through its
own engine for a missing folder), then ``Finished in state Failed('... <the line>')``. For these
errors only the second stays in Prefect's flow- and task-run logs, so the line is said once per
run, while any other exception keeps its traceback.
"""

from __future__ import annotations

import logging

from featurestore.errors import FeatureStoreError

#: the loggers Prefect's engines report failed runs on
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class ExpectedErrorsInOneLine(logging.Filter):
    """Drops a log record whose exception is a ``FeatureStoreError``: the run's closing state,
    logged next, carries the same line without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], FeatureStoreError))


for _name in RUN_LOGGERS:
    logging.getLogger(_name).addFilter(ExpectedErrorsInOneLine())
