"""Prefect tasks of the extract flow: thin wrappers over ``featurestore.extract``.

They exchange dataset and model names, paths and small dicts, never feature arrays. ONNX
backbones are re-registered inside each task from their spec files, because a task may run in
another process or on another host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from featurestore import extract as library
from featurestore.backbones import register_onnx_spec
from featurestore.errors import FeatureStoreError, StoreLocked
from featurestore.extract.shards import ShardMissing
from tasks.interrupts import task


def _register(onnx_specs: list[str] | None) -> None:
    for spec in onnx_specs or []:
        register_onnx_spec(spec)


@contextmanager
def _library_log_in_the_run() -> Iterator[None]:
    """While inside, what the library logs from this thread also goes to the task run's logs
    (``prefect flow-run logs``, the UI). Prefect sends only its own loggers there: a cancelled or
    stopped pass's "stopped after N of M rows, which are kept; ... to resume" reached the worker's
    output alone. Other threads' lines are left out: tasks running at once log their own."""
    from prefect.logging.handlers import APILogHandler

    handler = APILogHandler()
    thread = threading.get_ident()
    handler.addFilter(lambda record: record.thread == thread)
    logger = logging.getLogger(library.__name__)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@task(name="plan-extract")
def pending_models(dataset: str, models: list[str], root: str | None, weights: dict[str, str] | None,
                   layer: str | None, onnx_specs: list[str] | None = None, overwrite: bool = False,
                   replace_stale: bool = False, precision: str | None = None) -> list[str]:
    """Models of ``dataset`` whose store must be written; decided by fingerprint (and an explicit
    ``precision`` against the one a complete store was computed in), no model loaded."""
    _register(onnx_specs)
    return library.pending_models(dataset, models, root, weights=weights, layer=layer, overwrite=overwrite,
                                  replace_stale=replace_stale, precision=precision)


def retry_unless_bad_input(task, task_run, state) -> bool:
    """Retry a pass that crashed (a retry resumes its stores), not one refused for a reason the
    user must fix (bad option, weights, store held by another writer): it would fail again."""
    try:
        state.result()
    except FeatureStoreError:
        return False
    except Exception:
        return True
    return False


@task(name="extract-stores", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_unless_bad_input)
def extract_stores(dataset: str, models: list[str], root: str | None, device: str, runtime: str | None,
                   precision: str | None, batch_size: int | None, weights: dict[str, str] | None, layer: str | None,
                   shard_index: int = 0, shard_count: int = 1, onnx_specs: list[str] | None = None,
                   overwrite: bool = False, replace_stale: bool = False) -> list[dict]:
    """Extract ``models`` over one shard of ``dataset`` with shared decoding; a retry resumes the stores."""
    _register(onnx_specs)
    with _library_log_in_the_run():
        results = library.extract(dataset, models, root, device=device, runtime=runtime, precision=precision,
                                  batch_size=batch_size, weights=weights, layer=layer,
                                  shard=library.Shard(shard_index, shard_count), overwrite=overwrite,
                                  replace_stale=replace_stale, progress=True)
    return [r.as_dict() for r in results]


@task(name="merge-shards", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_unless_bad_input)
def merge_shards(dataset: str, model: str, count: int, root: str | None, weights: dict[str, str] | None,
                 layer: str | None, onnx_specs: list[str] | None = None, if_ready: bool = False,
                 overwrite: bool = False, replace_stale: bool = False) -> dict:
    """Join the ``count`` shard stores of ``model`` into its store; return the summary.

    With ``if_ready`` (one run per shard) a shard still missing, or another run merging, is
    not an error: this run reports ``shard-done`` and leaves the merge to the last one; its
    ``waiting_for`` names the shards still missing (none: another run is merging).
    """
    _register(onnx_specs)
    try:
        (result,) = library.merge_shards(dataset, [model], count, root, weights=weights, layer=layer,
                                         overwrite=overwrite, replace_stale=replace_stale)
    except (ShardMissing, StoreLocked) as error:
        if not if_ready:
            raise
        return {"dataset": dataset, "model": model, "status": "shard-done",
                "waiting_for": list(getattr(error, "unready", ()))}
    return result.as_dict()
