"""Writing stage: HDF5 writes happen on a background thread, overlapped with compute.

One ``BackgroundWriter`` per store (HDF5 allows one writer per file); the queue is bounded, so
a slow disk slows the model down instead of letting features pile up in memory.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from featurestore.store import StoreWriter

_DONE = object()


class BackgroundWriter:
    """Feeds ``StoreWriter.write`` from a thread; errors surface on the next ``put`` or ``close``."""

    def __init__(self, writer: StoreWriter, depth: int = 4):
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name=f"featurestore-write-{writer.spec.model}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self.writer.write(*item)
                except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, features: np.ndarray, failed: np.ndarray) -> None:
        """Queue the next rows for writing."""
        self._raise()
        self._queue.put((features, failed))

    def close(self) -> None:
        """Wait for every queued write; raise the first write error, if any. Idempotent."""
        if not self._closed:
            self._closed = True
            self._queue.put(_DONE)
            self._thread.join()
        self._raise()
