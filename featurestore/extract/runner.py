"""The extract step: every backbone over one dataset, once, into its store.

``extract`` plans the stores (no model loaded), skips the complete ones, resumes the partial
ones from their last committed row, and runs the rest together: one reader decodes each image
once and feeds every backbone its own crop; each store has its own background writer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from featurestore.backbones import get_backbone
from featurestore.extract.plan import WHOLE, Job, Shard, plan_jobs
from featurestore.extract.reader import Reader, check_reader_name, open_reader
from featurestore.extract.runtimes import (
    RuntimeRequest,
    build_runtime,
    check_options,
    default_runtime,
    device_kind,
    resolve_device,
)
from featurestore.extract.stop import STOP_LINE, raise_if_stop_requested, stop_requested
from featurestore.extract.writer import BackgroundWriter
from featurestore.errors import FeatureStoreError
from featurestore.paths import check_root
from featurestore.store import StoreWriter
from featurestore.store.h5io import open_store
from featurestore.store.paths import partial_path
from featurestore.store.provenance import read_provenance

log = logging.getLogger(__name__)

DEFAULT_BATCH = {"cpu": 32, "cuda": 256}
DEFAULT_COMMIT_BYTES = 8 << 20  # a crash loses at most ~8 MiB of features (~1,600 rows at dim 1280)


@dataclass
class ExtractResult:
    """What happened to one store."""

    dataset: str
    model: str
    path: Path
    status: str  # "skipped" (already complete), "extracted", "resumed"
    rows: int
    written: int = 0
    failed: int = 0
    seconds: float = 0.0
    runtime: str = ""
    fingerprint: str = ""

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        """JSON-ready summary (paths as strings)."""
        return {"dataset": self.dataset, "model": self.model, "path": str(self.path), "status": self.status,
                "rows": self.rows, "written": self.written, "failed": self.failed,
                "seconds": round(self.seconds, 3), "images_per_second": round(self.images_per_second, 1),
                "runtime": self.runtime, "fingerprint": self.fingerprint}


class FeaturesNotFinite(FeatureStoreError):
    """Every row a pass computed for a store is NaN or infinite: broken weights or model."""


@dataclass(frozen=True)
class _PassOptions:
    """How one pass fills its stores: ``extract``'s options, with the batch size resolved."""

    device: str
    runtime: str | None
    precision: str | None
    batch_size: int
    workers: int | None
    threads: int | None
    root: object
    overwrite: bool  # overwrite or replace_stale: planning chose the stores to replace, the writers may
    commit_bytes: int
    progress: bool


@dataclass
class _Active:
    """A job being filled: its writer, runtime and the next manifest row it needs."""

    job: Job
    writer: StoreWriter
    sink: BackgroundWriter
    runtime: object
    next_row: int
    resumed: bool
    written: int = 0
    failed: int = 0
    not_finite: int = 0
    inflight: tuple | None = field(default=None)

    def push(self, handle, failed) -> None:
        # Queue this batch, then hand the previous one to the writer: on a GPU the next batch
        # is already running while the previous result is copied back and written.
        if self.inflight is not None:
            self._drain()
        self.inflight = (handle, failed)

    def _drain(self) -> None:
        handle, failed = self.inflight
        self.inflight = None
        features = self.runtime.collect(handle)
        self.sink.put(features, failed)
        self.written += len(failed)
        self.failed += int(failed.sum())
        self.not_finite += int((~np.isfinite(features).all(axis=1) & ~failed).sum())

    def flush(self) -> None:
        if self.inflight is not None:
            self._drain()


def check_request(models: Sequence[str], *, device: str = "auto", runtime: str | None = None,
                  precision: str | None = None, batch_size: int | None = None, workers: int | None = None,
                  threads: int | None = None, reader: str | None = None) -> str:
    """Check an extract request's models and options, in one line each; return the resolved device.

    ``extract`` and the extract flow call it before planning: with every store complete nothing
    runs, and a bad option must fail all the same.
    """
    device = resolve_device(device)
    check_options([get_backbone(name) for name in models], device, runtime, precision, batch_size, workers, threads)
    check_reader_name(reader)
    return device


def extract(dataset: str, models: Sequence[str], root=None, *, device: str = "auto", runtime: str | None = None,
            precision: str | None = None, batch_size: int | None = None, workers: int | None = None,
            threads: int | None = None, reader: str | None = None, weights: Mapping[str, str] | None = None,
            layer: str | None = None, shard: Shard = WHOLE, overwrite: bool = False, replace_stale: bool = False,
            download: bool = True, commit_bytes: int = DEFAULT_COMMIT_BYTES, progress: bool = True,
            manifest=None) -> list[ExtractResult]:
    """Extract ``models`` over ``dataset`` into ``<root>/stores/<dataset>/<model>.h5``.

    Complete stores with a matching fingerprint are skipped without loading their model;
    interrupted ones resume. ``reader`` (a name in ``reader.READERS``; default: see
    ``reader.default_reader``) and ``workers`` choose how images are decoded. ``weights``
    maps a model to a weights file (``--weights``); ``shard`` extracts one slice of the rows into
    a shard store (see docs/sharding.md). A complete store built from other inputs is replaced
    (once the new one is complete) with ``overwrite``; with ``replace_stale``, only one built from
    an earlier manifest of the dataset. An interrupted store computed in another precision than
    this pass's (``precision``, else bf16 for torch on a GPU, fp32 otherwise) is started again,
    never resumed; an explicit ``precision`` also conflicts with a complete store recorded in
    another one (``overwrite`` replaces it), while without one any complete store is reused.
    ``extract.stop.request_stop()`` from another thread stops it after the current batch, as
    Ctrl-C does in the thread running it.
    """
    device = check_request(models, device=device, runtime=runtime, precision=precision, batch_size=batch_size,
                           workers=workers, threads=threads, reader=reader)
    # The stores go there: a bad root fails here, in one line. Without a manifest from the caller,
    # the root must hold the ingested dataset, so a typo in --root is said as such and makes none.
    check_root(root, create=manifest is not None)
    if manifest is None:
        from featurestore.datasets.manifest import load_manifest

        manifest = load_manifest(dataset, root)
    jobs = plan_jobs(manifest, dataset, models, root, weights=weights, layer=layer, shard=shard, download=download,
                     device=device, runtime=runtime, precision=precision)
    if reader is not None:
        # Whether it can serve these models is checked like any option, even when no store is pending.
        open_reader(reader, device, manifest, *_pass_of(jobs, runtime, device))
    results: dict[str, ExtractResult] = {}
    pending = []
    for job in jobs:
        if not job.pending(overwrite, replace_stale):
            log.info("%s: complete with the same fingerprint; skipped", job.path)
            results[job.model] = _skipped(job, job.path)
        else:
            pending.append(job)
    if pending:
        read = open_reader(reader, device, manifest, *_pass_of(pending, runtime, device))
        options = _PassOptions(device=device, runtime=runtime, precision=precision,
                               batch_size=batch_size or DEFAULT_BATCH[device_kind(device)],
                               workers=workers, threads=threads, root=root, overwrite=overwrite or replace_stale,
                               commit_bytes=commit_bytes, progress=progress)
        for result in _run(pending, manifest, read, options):
            results[result.model] = result
    return [results[job.model] for job in jobs]


def pending_models(dataset: str, models: Sequence[str], root=None, *, weights: Mapping[str, str] | None = None,
                   layer: str | None = None, overwrite: bool = False, replace_stale: bool = False,
                   download: bool = True, manifest=None, precision: str | None = None) -> list[str]:
    """Models whose whole store must be written (decided from fingerprints; no model is loaded);
    ``overwrite``, ``replace_stale`` and an explicit ``precision`` as for ``extract``."""
    if manifest is None:
        from featurestore.datasets.manifest import load_manifest

        manifest = load_manifest(dataset, root)
    jobs = plan_jobs(manifest, dataset, models, root, weights=weights, layer=layer, download=download,
                     precision=precision)
    return [job.backbone.name for job in jobs if job.pending(overwrite, replace_stale)]


def _pass_of(jobs: Sequence[Job], runtime: str | None, device: str) -> tuple[list[str], list]:
    """The runtime names and preprocessings of a pass over ``jobs``, as a reader is chosen by."""
    return ([runtime or default_runtime(job.backbone, device) for job in jobs],
            [job.backbone.preprocessing for job in jobs])


def _skipped(job: Job, path: Path) -> ExtractResult:
    """The result for a store that was complete already, with the failed rows it recorded; those
    are said, since only ``overwrite`` extracts such a store again (its images may read now)."""
    with open_store(path) as file:
        failed = read_provenance(file).get("failed_rows") or 0
    if failed:
        log.warning("%s: complete, with %d rows whose images failed to decode at extraction (stored as zeros); "
                    "if they read now, extract again with --overwrite to redo the store", path, failed)
    return ExtractResult(job.spec.dataset, job.model, path, "skipped", len(job.rows), failed=failed,
                         fingerprint=job.spec.fingerprint)


def _run(jobs: list[Job], manifest, read: Reader, options: _PassOptions) -> list[ExtractResult]:
    """Fill the stores of ``jobs`` in one pass over the images ``read`` decodes."""
    offset, stop = jobs[0].shard.bounds(len(manifest.frame))
    loads: dict[str, bool] = {}
    with ExitStack() as stack:
        done, opened = _open_writers(jobs, stack, options, loads)
        if not opened:
            return done
        first = offset + min(writer.committed_rows for _, writer in opened)
        preprocessings = [job.backbone.preprocessing for job, _ in opened]
        # Asked for before the models load: a process reader's workers start up meanwhile.
        batches = read(manifest, preprocessings, first, stop, options.batch_size, options.workers)
        active = _start_runtimes(opened, offset, stack, options, loads)
        started = time.perf_counter()
        names = ", ".join(a.job.model for a in active)
        with tqdm(total=stop - first, unit="img", desc=f"{jobs[0].spec.dataset}: {names}",
                  disable=not options.progress, smoothing=0.1) as bar:
            _pump(batches, active, bar)
        seconds = time.perf_counter() - started
        finished, broken = _finish(active, seconds, read.name, options)
    if broken:
        raise FeaturesNotFinite(f"{'; '.join(broken)} came out NaN or infinite: the model or its weights are "
                                "broken; that store was deleted unfinished (a complete one before it is kept): fix "
                                "the weights and extract again")
    return done + finished


def _open_writers(jobs: list[Job], stack: ExitStack, options: _PassOptions,
                  loads: Mapping[str, bool]) -> tuple[list[ExtractResult], list[tuple[Job, StoreWriter]]]:
    """Open each job's store writer on ``stack``: the results of the stores found complete, and
    the (job, writer) pairs still to fill. ``loads`` is ``_start_runtimes``'s, for what a stop says."""
    done: list[ExtractResult] = []
    opened = []
    for job in jobs:
        writer = stack.enter_context(_kept_if_written(StoreWriter.open(
            job.spec, job.rows, job.root, overwrite=options.overwrite, commit_bytes=options.commit_bytes),
            job.model, loads))
        if writer.is_complete:
            done.append(_skipped(job, writer.path))
        else:
            opened.append((job, writer))
    return done, opened


def _start_runtimes(opened: list[tuple[Job, StoreWriter]], offset: int, stack: ExitStack, options: _PassOptions,
                    loads: dict[str, bool]) -> list[_Active]:
    """Load each store's model and start its background writer (closed by ``stack``); each
    resumes after its writer's committed rows. ``loads`` records each model as it starts loading
    (False) and once loaded (True)."""
    active: list[_Active] = []
    for job, writer in opened:
        loads[job.model] = False
        engine = build_runtime(RuntimeRequest(job.backbone, job.weights, job.layer, options.device,
                                              options.precision, options.threads, options.batch_size, options.root),
                               options.runtime)
        # A load can take minutes (a first ONNX export): a stop requested meanwhile (a cancelled
        # flow run) stops here, not after the first batch of a pass nobody wants.
        raise_if_stop_requested()
        loads[job.model] = True
        sink = BackgroundWriter(writer)
        stack.callback(sink.close)
        active.append(_Active(job, writer, sink, engine, offset + writer.committed_rows,
                              resumed=writer.committed_rows > 0))
    return active


def _pump(batches, active: list[_Active], bar) -> None:
    """Submit each batch to every store that still needs some of its rows, checking for a stop between batches."""
    for batch in batches:
        # Ctrl-C reaches only the main thread; when this runs in a worker thread the main
        # thread's handler requests the stop, and this raises it here, between batches.
        raise_if_stop_requested()
        for item in active:
            skip = item.next_row - batch.start
            if skip >= len(batch):
                continue
            if batch.stored is None:
                handle = item.runtime.submit(batch.inputs[item.job.backbone.preprocessing][skip:])
            else:
                handle = item.runtime.submit_stored(batch.stored[skip:])
            item.push(handle, batch.failed[skip:])
            item.next_row = batch.start + len(batch)
        bar.update(len(batch))


def _finish(active: list[_Active], seconds: float, reader: str,
            options: _PassOptions) -> tuple[list[ExtractResult], list[str]]:
    """Write the last rows and finalize each store: the results of the stores finalized, and what
    to say about those deleted because not one of their rows came out finite."""
    finished: list[ExtractResult] = []
    broken = []
    for item in active:
        item.flush()
        item.sink.close()
        if item.not_finite and item.not_finite == item.written - item.failed:
            # Not one usable row: finished, it would replace a good store (--overwrite) with NaN.
            item.writer.discard()
            broken.append(f"{partial_path(item.writer.path)}: all {item.not_finite} rows")
            continue
        item.writer.finalize(_provenance(item, options.device, options.batch_size, reader))
        if item.not_finite:
            # Stored as computed (the store records what the model gave); said now, not first by verify.
            log.warning("%s: %d of %d rows have NaN or infinite features: the model or its weights are "
                        "probably broken (`featurestore verify` lists the store)", item.writer.path,
                        item.not_finite, item.written)
        finished.append(ExtractResult(item.job.spec.dataset, item.job.model, item.writer.path,
                                      "resumed" if item.resumed else "extracted", len(item.job.rows),
                                      item.written, item.failed, seconds, item.runtime.name,
                                      item.job.spec.fingerprint))
    return finished, broken


#: what a stop before a store's first row says, by whether its model is loaded (``_start_runtimes``'s
#: ``loads``: absent, not yet loading; False, loading; True, loaded)
_NOTHING_WRITTEN = {
    None: "stopped before loading {model}; nothing was written",
    False: "stopped while loading {model}; nothing was written",
    True: "stopped before {model} stored its first rows; nothing was written",
}


@contextmanager
def _kept_if_written(writer: StoreWriter, model: str, loads: Mapping[str, bool]) -> Iterator[StoreWriter]:
    """``writer``, closed on exit. If the pass fails before it got a row, its fresh partial file
    goes too (a model that does not load must not leave an "interrupted 0/N" store); if it fails
    later (Ctrl-C, say), the log names the partial file, how far it got and how to resume: a
    complete store still beside it was built from other inputs, so only --overwrite resumes.

    Whatever a stop (``KeyboardInterrupt``, or any error after ``request_stop``: a Ctrl-C landing
    in a C extension's module init comes out as ImportError) finds, one line says it: logged, and
    added to the exception as a note, which ``featurestore extract`` prints itself.
    """
    with writer:
        try:
            yield writer
        except BaseException as error:
            stopped = isinstance(error, KeyboardInterrupt) or stop_requested()
            if writer.discard_if_unused():
                if stopped:  # a failure to load says its own cause
                    _say_stopped(error, _NOTHING_WRITTEN[loads.get(model)].format(model=model))
            elif writer.is_complete:
                if stopped:
                    _say_stopped(error, f"{writer.path}: complete before the stop; it is kept")
            else:
                again = "run extract again with --overwrite" if writer.path.exists() else "run extract again"
                _say_stopped(error, f"{partial_path(writer.path)}: stopped after {writer.committed_rows} of "
                                    f"{len(writer.rows)} rows, which are kept; {again} to resume")
            raise


def _say_stopped(error: BaseException, line: str) -> None:
    """Log ``line`` and add it to ``error``'s notes, for a caller that prints them itself
    (``featurestore extract``: not through logging, whose handler a second Ctrl-C could cut short)."""
    log.warning("%s", line, extra={STOP_LINE: True})
    error.add_note(line)


def _provenance(item: _Active, device: str, batch_size: int, reader: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "torchvision", "onnxruntime", "onnx", "pillow"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    job = item.job
    return {
        "library_versions": versions,
        "backbone": job.backbone.name,
        "architecture": job.backbone.architecture,
        "layer": job.layer,
        "weights_source": job.weights.source,
        "runtime": item.runtime.name,
        "reader": reader,
        "precision": item.runtime.precision,
        "device": device,
        "batch_size": batch_size,
        "shard": [job.shard.index, job.shard.count],
        **item.runtime.provenance,  # last: what the runtime really ran on overrides the request
    }
