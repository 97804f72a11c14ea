"""Readers for datasets published as pixel arrays (Fashion-MNIST idx files, CIFAR python pickles).

Their images are written once into ``images.npy`` (uint8), addressed in the manifest as
``images.npy#<row>``; a marker records the inputs so an unchanged dataset is not rewritten.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from featurestore.datasets.errors import DatasetError
from featurestore.datasets.registry import Layout
from featurestore.files import written_aside

ARRAY_FILE = "images.npy"
_IDX_MAGIC = {2049: 1, 2051: 3}


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped idx file (the MNIST family's format) as a uint8 array."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: not a readable gzip file ({error}); delete it and fetch the dataset again") from None
    magic = int.from_bytes(data[:4], "big")
    if magic not in _IDX_MAGIC:
        raise DatasetError(f"{path}: not an idx file (magic {magic}); delete it and fetch the dataset again")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(_IDX_MAGIC[magic])]
    offset = 4 + 4 * len(dims)
    if len(data) - offset != int(np.prod(dims)):
        raise DatasetError(f"{path}: holds {len(data) - offset} bytes of data, its header says {dims}; fetch it again")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that builds only numpy arrays and plain containers: a pickle cannot run code here."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a dataset pickle")
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict:
    """Load a CIFAR-style batch (a pickled dict of arrays and lists) without executing code."""
    try:
        with open(path, "rb") as handle:
            return _ArrayUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DatasetError(f"{path}: not a readable CIFAR batch ({error}); delete it and fetch again") from None


def _write_once(directory: Path, inputs: Sequence[Path], build: Callable[[], np.ndarray]) -> Path:
    """Write ``images.npy`` from ``build()`` unless it was already written from these inputs."""
    target = directory / ARRAY_FILE
    marker = directory / ".unpacked" / ARRAY_FILE
    fingerprint = "".join(f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}\n" for p in inputs)
    if target.is_file() and marker.is_file() and marker.read_text() == fingerprint:
        return target
    pixels = build()
    with written_aside(target) as partial:
        np.save(partial, np.ascontiguousarray(pixels, dtype=np.uint8))
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(fingerprint)
    return target


def _array_layout(labels_by_split: Sequence[tuple[str, np.ndarray]], classes: Sequence[str]) -> Layout:
    ids, splits, names = [], [], []
    for split, labels in labels_by_split:
        if labels.size and int(labels.max()) >= len(classes):
            raise DatasetError(f"{split} labels go up to {int(labels.max())}, beyond the {len(classes)} classes")
        ids += [f"{split}/{i:05d}" for i in range(len(labels))]
        splits += [split] * len(labels)
        names += [classes[int(label)] for label in labels]
    # Object columns: pandas' string dtype would cost more to build than everything done with them.
    frame = pd.DataFrame({"id": ids, "source": [f"{ARRAY_FILE}#{i}" for i in range(len(ids))],
                          "class_name": names, "split": splits}, dtype=object)
    return Layout(frame=frame, classes=tuple(classes), arrays=True)


def idx_reader(classes: Sequence[str], files: dict[str, tuple[str, str]]) -> Callable[[Path, dict[str, Path]], Layout]:
    """Reader for an MNIST-style dataset: ``files`` maps split -> (images file, labels file)."""

    def read(directory: Path, paths: dict[str, Path]) -> Layout:
        inputs = [paths[name] for pair in files.values() for name in pair]
        labels = [(split, read_idx(paths[label_file])) for split, (_, label_file) in files.items()]
        _write_once(directory, inputs, lambda: np.concatenate([read_idx(paths[img]) for img, _ in files.values()]))
        return _array_layout(labels, classes)

    return read


def cifar_reader(folder: str, batches: dict[str, Sequence[str]], label_key: str = "labels",
                 names_file: str = "batches.meta", names_key: str = "label_names") -> Callable[[Path, dict[str, Path]], Layout]:
    """Reader for a CIFAR-style python tarball unpacked to ``folder``: ``batches`` maps split -> files."""

    def read(directory: Path, paths: dict[str, Path]) -> Layout:
        base = directory / folder
        classes = [str(name) for name in read_pickle(base / names_file)[names_key]]
        loaded = {split: [read_pickle(base / name) for name in names] for split, names in batches.items()}
        labels = [(split, np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in group]))
                  for split, group in loaded.items()]

        def build() -> np.ndarray:
            flat = np.concatenate([b["data"] for group in loaded.values() for b in group])
            return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

        _write_once(directory, [base / n for names in batches.values() for n in names], build)
        return _array_layout(labels, classes)

    return read
