"""The ``processes`` reader: decoding in worker processes through torch's ``DataLoader``.

A thread pool stops scaling at about four threads (measured on a 16-core GPU host: 2,900
Fashion-MNIST images/s with 4 threads, 1,900 with 16), because the Python around each image
holds the GIL. A GPU eats several thousand images per second, so it is fed by processes:

* each ``DataLoader`` item is one whole batch of rows, decoded and cropped by a worker into
  tensors that live in shared memory from the start (no copy when handed to the parent);
* ``pin_memory`` copies it into page-locked memory on the loader's own thread, so the
  runtime's copy to the GPU is asynchronous;
* ``prefetch_factor`` batches per worker are in flight at most, so memory stays flat.

Workers are not forked from the parent, which holds CUDA state and threads a forked child
must not inherit, but from a fork server that has imported this module (torch, Pillow,
pandas) once: spawning 14 workers that each imported torch took ~6 s before the first batch.
The server outlives the pass, so later passes in the same process start at once. Each worker
gets the pickled dataset through a pipe the parent waits on, so the dataset carries the
manifest's folder and hash, not its rows (megabytes, which once made every worker wait for
the previous one to start).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from featurestore.backbones import Preprocessing
from featurestore.datasets.errors import DatasetError
from featurestore.datasets.manifest import Manifest, manifest_at
from featurestore.extract.reader import PreparedBatch, prepare_into
from featurestore.extract.runtimes import cpu_threads


class BatchesOfRows(Dataset):
    """Item ``k``: rows ``[start + k * batch_size, ...)`` as ``(start, crops per preprocessing, failed)``."""

    def __init__(self, manifest: Manifest, preprocessings: Sequence[Preprocessing], start: int, stop: int,
                 batch_size: int):
        self.directory, self.hash = manifest.directory, manifest.hash
        self._manifest: Manifest | None = None
        self.preprocessings = list(dict.fromkeys(preprocessings))
        self.start, self.stop, self.batch_size = start, stop, batch_size

    def __len__(self) -> int:
        return -(-(self.stop - self.start) // self.batch_size)

    def manifest(self) -> Manifest:
        """The manifest, loaded once per worker; it must be the one the stores were planned from."""
        if self._manifest is None:
            manifest = manifest_at(self.directory)
            if manifest.hash != self.hash:
                raise DatasetError(f"{self.directory}: the manifest changed while extracting from it "
                                   f"(was {self.hash[:12]}, now {manifest.hash[:12]}); run extract again")
            self._manifest = manifest
        return self._manifest

    def __getitem__(self, k: int) -> tuple[int, tuple[torch.Tensor, ...], torch.Tensor]:
        begin = self.start + k * self.batch_size
        n = min(self.batch_size, self.stop - begin)
        # Allocated in shared memory so that handing the batch to the parent moves no pixels;
        # every row is overwritten (failed rows' features are zeroed by the store writer).
        crops = tuple(torch.empty((n, p.size, p.size, 3), dtype=torch.uint8).share_memory_()
                      for p in self.preprocessings)
        failed = np.zeros(n, dtype=bool)
        prepare_into(self.manifest(), begin, {p: c.numpy() for p, c in zip(self.preprocessings, crops)}, failed)
        return begin, crops, torch.from_numpy(failed)


def _fork_server():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def read_batches_in_processes(manifest, preprocessings: Sequence[Preprocessing], start: int, stop: int,
                              batch_size: int, workers: int | None = None, pin_memory: bool = False,
                              prefetch_factor: int = 2) -> Iterator[PreparedBatch]:
    """Prepared batches over rows ``[start, stop)`` in order, decoded by ``workers`` processes
    (default: every core but two, which the model's thread and the pinning thread need);
    ``pin_memory`` when they are bound for a GPU."""
    dataset = BatchesOfRows(manifest, preprocessings, start, stop, batch_size)
    if not len(dataset):
        return iter(())
    workers = workers or max(1, cpu_threads() - 2)
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin_memory,
                        prefetch_factor=prefetch_factor, multiprocessing_context=_fork_server())
    # iter() starts the workers now, not at the first batch: the caller loads its models meanwhile.
    loaded = iter(loader)
    return (PreparedBatch(int(begin), {p: c.numpy() for p, c in zip(dataset.preprocessings, crops)}, failed.numpy())
            for begin, crops, failed in loaded)
