"""Reading stage: each image is read and decoded once, then cropped for every backbone.

Batches are prepared by a small thread pool (Pillow releases the GIL while decoding and
resizing) a few batches ahead of the model, so decoding overlaps compute, and at most
``prefetch`` batches are alive at any time, so memory stays flat however large the dataset.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from featurestore.backbones import Preprocessing

log = logging.getLogger(__name__)


@dataclass
class PreparedBatch:
    """Rows ``[start, start + len(failed))`` of the manifest, cropped once per preprocessing."""

    start: int
    inputs: dict[Preprocessing, np.ndarray]  # uint8 (n, S, S, 3) per distinct preprocessing
    failed: np.ndarray  # bool (n,): the image could not be read or decoded

    def __len__(self) -> int:
        return len(self.failed)


def prepare(manifest, start: int, stop: int, preprocessings: Sequence[Preprocessing]) -> PreparedBatch:
    """Decode rows ``[start, stop)`` once and crop each for every preprocessing."""
    n = stop - start
    inputs = {p: np.zeros((n, p.size, p.size, 3), np.uint8) for p in preprocessings}
    failed = np.zeros(n, dtype=bool)
    for j in range(n):
        try:
            # Greyscale stays one channel until each crop is made (see Preprocessing.apply).
            pixels = manifest.read_pixels(start + j)
            for preprocessing, batch in inputs.items():
                batch[j] = preprocessing.apply(pixels)
        except Exception as error:  # noqa: BLE001 - one bad image must not stop the pass
            failed[j] = True
            log.warning("row %d (%s): cannot decode (%s); recorded as failed",
                        start + j, manifest.frame["id"].iat[start + j], error)
    return PreparedBatch(start, inputs, failed)


def read_batches(manifest, preprocessings: Sequence[Preprocessing], start: int, stop: int,
                 batch_size: int, workers: int = 2, prefetch: int | None = None) -> Iterator[PreparedBatch]:
    """Prepared batches over rows ``[start, stop)`` in order, ``prefetch`` in flight at most."""
    distinct = list(dict.fromkeys(preprocessings))
    ahead = prefetch or workers + 1
    bounds = iter(range(start, stop, batch_size))
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="featurestore-read") as pool:
        pending: deque = deque()
        try:
            while True:
                while len(pending) < ahead:
                    begin = next(bounds, None)
                    if begin is None:
                        break
                    pending.append(pool.submit(prepare, manifest, begin, min(begin + batch_size, stop), distinct))
                if not pending:
                    return
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
