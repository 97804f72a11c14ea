"""Reading stage: each image is read and decoded once, then cropped for every backbone.

Four readers, all a few batches ahead of the model (decoding overlaps compute) with a bounded
number of batches alive (memory stays flat however large the dataset):

* ``threads`` (the CPU default): a small thread pool; Pillow releases the GIL while decoding
  and resizing, and the model needs the cores anyway.
* ``processes`` (the GPU default): worker processes through torch's ``DataLoader``
  (``process_reader.py``), batches handed over in shared memory and pinned for the copy to
  the GPU. Threads stop scaling at about four: the Python around each image holds the GIL.
* ``device-resize`` (the GPU default for datasets stored as one array, e.g. Fashion-MNIST):
  each batch is one slice of the array, and the torch runtime resizes and crops it on the GPU
  (``Preprocessing.apply_tensor``, within two levels of Pillow's bytes).
* ``device-decode`` (opt-in): JPEG files decoded on the device (nvJPEG on a GPU), resized and
  cropped there per model (``device_decode.py``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from featurestore.backbones import Preprocessing
from featurestore.backbones.preprocessing import TORCH_FILTERS
from featurestore.errors import InvalidName
from featurestore.extract.runtimes import RUNTIMES, cpu_threads, device_kind
from featurestore.registry import Registry, alternatives

log = logging.getLogger(__name__)


@dataclass
class PreparedBatch:
    """Rows ``[start, start + len(failed))`` of the manifest, cropped once per preprocessing."""

    start: int
    inputs: dict[Preprocessing, np.ndarray]  # uint8 (n, S, S, 3) per distinct preprocessing
    failed: np.ndarray  # bool (n,): the image could not be read or decoded
    #: the images uncropped, for a runtime that crops on its device (``inputs`` is then empty):
    #: a slice of the stored array (``device-resize``) or one ``uint8 (H, W, 3)`` tensor per row
    #: on the device (``device-decode``)
    stored: np.ndarray | list | None = None

    def __len__(self) -> int:
        return len(self.failed)


def prepare_into(manifest, start: int, inputs: dict[Preprocessing, np.ndarray], failed: np.ndarray) -> None:
    """Decode rows ``[start, start + len(failed))`` once and crop each into ``inputs[preprocessing]``."""
    for j in range(len(failed)):
        try:
            # Greyscale stays one channel until each crop is made (see Preprocessing.apply).
            image = manifest.read_image(start + j)
            for preprocessing, batch in inputs.items():
                batch[j] = preprocessing.apply(image)
        except Exception as error:  # noqa: BLE001 - one bad image must not stop the pass
            record_failure(manifest, start, j, failed, error)


def record_failure(manifest, start: int, j: int, failed: np.ndarray, error: Exception) -> None:
    """Flag row ``start + j`` of a batch as failed (the store zeroes its features) and say why."""
    failed[j] = True
    log.warning("row %d (%s): cannot decode (%s); recorded as failed",
                start + j, manifest.frame["id"].iat[start + j], error)


def prepare(manifest, start: int, stop: int, preprocessings: Sequence[Preprocessing]) -> PreparedBatch:
    """Decode rows ``[start, stop)`` once and crop each for every preprocessing."""
    n = stop - start
    batch = PreparedBatch(start, {p: np.zeros((n, p.size, p.size, 3), np.uint8) for p in preprocessings},
                          np.zeros(n, dtype=bool))
    prepare_into(manifest, start, batch.inputs, batch.failed)
    return batch


def prefetched(make, start: int, stop: int, batch_size: int, workers: int, ahead: int) -> Iterator[PreparedBatch]:
    """``make(begin, end)`` over ``[start, stop)`` in batches, on ``workers`` threads, ``ahead`` in flight."""
    bounds = iter(range(start, stop, batch_size))
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="featurestore-read") as pool:
        pending: deque = deque()
        try:
            while True:
                while len(pending) < ahead:
                    begin = next(bounds, None)
                    if begin is None:
                        break
                    pending.append(pool.submit(make, begin, min(begin + batch_size, stop)))
                if not pending:
                    return
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def read_batches(manifest, preprocessings: Sequence[Preprocessing], start: int, stop: int,
                 batch_size: int, workers: int | None = None, prefetch: int | None = None) -> Iterator[PreparedBatch]:
    """Prepared batches over rows ``[start, stop)`` in order, decoded by ``workers`` threads
    (default: up to 4, where threads stop scaling), ``prefetch`` in flight at most."""
    distinct = list(dict.fromkeys(preprocessings))
    workers = workers or min(4, cpu_threads())
    return prefetched(lambda begin, end: prepare(manifest, begin, end, distinct), start, stop, batch_size,
                       workers, prefetch or workers + 1)


def read_stored_batches(manifest, preprocessings: Sequence[Preprocessing], start: int, stop: int,
                        batch_size: int, workers: int | None = None) -> Iterator[PreparedBatch]:
    """Batches of a one-array dataset as stored (``PreparedBatch.stored``), each one slice of the
    array, for a runtime that resizes on its own device: no per-image work on the CPU at all."""
    return prefetched(lambda begin, end: PreparedBatch(begin, {}, np.zeros(end - begin, bool),
                                                        manifest.read_pixels_batch(range(begin, end))),
                       start, stop, batch_size, 1, 3)


#: A read function: ``(manifest, preprocessings, start, stop, batch_size, workers=None)`` -> batches in row order.
ReadFunction = Callable[..., Iterator[PreparedBatch]]


def _device_crop_obstacle(device: str, manifest, runtimes: Sequence[str],
                          preprocessings: Sequence[Preprocessing]) -> str | None:
    """Why the models of a pass on ``device`` cannot resize and crop on it, or None when they can."""
    unable = [name for name in runtimes if not RUNTIMES.get(name).crops_on_device]
    if unable:
        cropper = next(name for name, spec in RUNTIMES.items() if spec.crops_on_device)
        # Where the cropping runtime is the default, the other one was asked for.
        fix = (f"drop --runtime {unable[0]}" if device_kind(device) in RUNTIMES.get(cropper).default_on
               else f"pass --runtime {cropper} ({unable[0]} is the default on {device_kind(device).upper()})")
        return f"it needs the {cropper} runtime for every model (it resizes on the model's device); {fix}"
    unmatched = sorted({p.interpolation for p in preprocessings} - set(TORCH_FILTERS))
    if unmatched:
        return f"interpolation {unmatched[0]!r} has no exact torch version"
    return None


def _device_resize_obstacle(device: str, manifest, runtimes: Sequence[str],
                            preprocessings: Sequence[Preprocessing]) -> str | None:
    """Why reader ``device-resize`` cannot serve a pass over ``manifest`` on ``device``, or None when it can."""
    if not manifest.is_one_array():
        return f"it reads datasets stored as one array (e.g. fashion-mnist); {manifest.directory.name!r} is not one"
    return _device_crop_obstacle(device, manifest, runtimes, preprocessings)


def _process_reader(device: str, manifest, runtimes: Sequence[str],
                    preprocessings: Sequence[Preprocessing]) -> ReadFunction:
    from featurestore.extract.process_reader import read_batches_in_processes

    # Pinned batches only pay off when they are copied to a GPU.
    return partial(read_batches_in_processes, pin_memory=device.startswith("cuda"))


def _decoding_reader(device: str, manifest, runtimes: Sequence[str],
                     preprocessings: Sequence[Preprocessing]) -> ReadFunction:
    from featurestore.extract.device_decode import read_decoded_batches

    return partial(read_decoded_batches, device=device)


def _serves_every_pass(device: str, manifest, runtimes: Sequence[str], preprocessings: Sequence[Preprocessing]) -> None:
    return None


@dataclass(frozen=True)
class ReaderSpec:
    """A reader's registry entry. Each function takes the pass: its device, manifest, and its
    models' runtime names and preprocessings."""

    #: the pass -> the ``ReadFunction`` that reads it
    open: Callable[..., ReadFunction]
    #: the pass -> why this reader cannot serve it, or None when it can
    obstacle: Callable[..., str | None] = _serves_every_pass
    #: device kinds (``runtimes.device_kind``) it is the default on, for the passes it can serve
    default_on: tuple[str, ...] = ()


#: The default for a pass is the first reader registered as a default on its device's kind that can
#: serve it, so device-resize, which needs no CPU work per image, comes before processes.
READERS: Registry[ReaderSpec] = Registry("reader")
READERS.register("threads", ReaderSpec(lambda device, manifest, runtimes, preprocessings: read_batches,
                                       default_on=("cpu",)))
READERS.register("device-resize", ReaderSpec(lambda device, manifest, runtimes, preprocessings: read_stored_batches,
                                             _device_resize_obstacle, default_on=("cuda",)))
# The GPU default otherwise: it needs every core decoding.
READERS.register("processes", ReaderSpec(_process_reader, default_on=("cuda",)))
READERS.register("device-decode", ReaderSpec(_decoding_reader, _device_crop_obstacle))


def default_reader(device: str, manifest, runtimes: Sequence[str], preprocessings: Sequence[Preprocessing]) -> str:
    """The first reader registered as a default on ``device``'s kind that can serve the pass. On a
    GPU: ``device-resize`` where it can (a one-array dataset, every runtime torch, every filter with
    a torch version), else ``processes``. On CPU: ``threads``."""
    kind = device_kind(device)
    return next(name for name, spec in READERS.items()
                if kind in spec.default_on and not spec.obstacle(device, manifest, runtimes, preprocessings))


@dataclass(frozen=True)
class Reader:
    """A reader chosen for one pass: its name (recorded in each store's provenance) and its function."""

    name: str
    read: ReadFunction

    def __call__(self, *args, **kwargs) -> Iterator[PreparedBatch]:
        return self.read(*args, **kwargs)


def check_reader_name(name: str | None) -> None:
    """``InvalidName`` listing the readers unless ``name`` is one of them (``None``: the default)."""
    if name is not None:
        READERS.get(name)


def open_reader(name: str | None, device: str, manifest, runtimes: Sequence[str],
                preprocessings: Sequence[Preprocessing]) -> Reader:
    """The reader called ``name`` (default: ``default_reader``) for a pass over ``manifest`` on
    ``device`` by models with these runtime names and preprocessings."""
    name = name or default_reader(device, manifest, runtimes, preprocessings)
    spec = READERS.get(name)
    obstacle = spec.obstacle(device, manifest, runtimes, preprocessings)
    if obstacle:
        able = alternatives(repr(other) for other, entry in READERS.items()
                            if not entry.obstacle(device, manifest, runtimes, preprocessings))
        raise InvalidName(f"reader {name!r} cannot read this pass: {obstacle}; choose reader {able}")
    return Reader(name, spec.open(device, manifest, runtimes, preprocessings))
