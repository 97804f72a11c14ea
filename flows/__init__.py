"""Prefect flows: ``ingest``, ``extract``, ``evaluate`` and ``feature-pipeline``.

Bad input raises a ``FeatureStoreError`` whose one line says what is wrong and what to do.
Prefect logs every failed flow run with its traceback, some 80 lines through its own engine for
a missing folder; for these errors the traceback is dropped from Prefect's flow- and task-run
logs (the line stays), while any other exception keeps its traceback.
"""

from __future__ import annotations

import logging

from featurestore.errors import FeatureStoreError

#: the loggers Prefect's engines report failed runs on
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class ExpectedErrorsInOneLine(logging.Filter):
    """Strips the traceback from a log record whose exception is a ``FeatureStoreError``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], FeatureStoreError):
            record.exc_info = None
            record.exc_text = None
        return True


for _name in RUN_LOGGERS:
    logging.getLogger(_name).addFilter(ExpectedErrorsInOneLine())
