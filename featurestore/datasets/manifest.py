"""The manifest: the contract between ingest and extract (see docs/architecture.md).

``<root>/datasets/<dataset>/manifest.csv`` lists one usable image per row; ``dataset.json`` next
to it holds the class names and the ingest parameters. The manifest's hash is the SHA-256 of the
CSV bytes, which are written deterministically (fixed column order, row order, ``\\n`` line ends,
plain integers), so the same images and parameters give the same hash on every machine.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from featurestore.datasets.errors import DatasetError, ImageChanged, ManifestNotFound
from featurestore.datasets.images import open_rgb
from featurestore.paths import dataset_dir, datasets_dir

MANIFEST_FILE = "manifest.csv"
INFO_FILE = "dataset.json"
COLUMNS = ("id", "source", "label", "class_name", "split", "fold", "width", "height", "mode", "sha256")
SPLITS = ("train", "val", "test")
_DTYPES = {
    "id": str, "source": str, "label": np.int64, "class_name": str, "split": str,
    "fold": np.int64, "width": np.int64, "height": np.int64, "mode": str, "sha256": str,
}
ARRAY_SEPARATOR = "#"
_SPECIAL = (",", '"', "\n", "\r")


def sort_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Order rows as the contract requires: by split (train, val, test), then by id."""
    order = frame["split"].map({name: rank for rank, name in enumerate(SPLITS)})
    return (
        frame.assign(_order=order)
        .sort_values(["_order", "id"], kind="mergesort")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def text_values(column: pd.Series) -> list[str]:
    """A column as a list of ``str`` (cheaper than ``astype(str)``, which builds a string array)."""
    if column.dtype.kind in "iu":
        # Python's decimal text of an int, the same on every platform (and faster than numpy's astype(str)).
        return list(map(str, column.tolist()))
    return [v if isinstance(v, str) else str(v) for v in column.tolist()]


def _csv_field(value: str) -> str:
    """``value`` quoted as the csv module's QUOTE_MINIMAL does, if it needs quoting at all."""
    if any(char in value for char in _SPECIAL):
        return '"' + value.replace('"', '""') + '"'
    return value


def manifest_bytes(frame: pd.DataFrame) -> bytes:
    """Serialise ``frame`` (already ordered) to the manifest's exact CSV bytes.

    Same bytes as ``csv.writer`` with ``lineterminator="\\n"``, built by joining strings, which is
    several times faster for the 10^5-row manifests of array datasets.
    """
    columns = []
    for name in COLUMNS:
        values = text_values(frame[name])
        joined = "\0".join(values)
        if any(char in joined for char in _SPECIAL):
            values = [_csv_field(value) for value in values]
        columns.append(values)
    lines = [",".join(COLUMNS)] + [",".join(row) for row in zip(*columns)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _atomic_write(path: Path, data: bytes) -> None:
    # Readers must never see half a manifest: write aside, then rename over.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def manifest_hash(data: bytes) -> str:
    """The hash of a manifest: the SHA-256 of its ``manifest.csv`` bytes."""
    return hashlib.sha256(data).hexdigest()


def current_manifest_hash(dataset: str, root: str | os.PathLike[str] | None = None) -> str | None:
    """The hash of ``dataset``'s manifest as it is now on disk (not parsed), or ``None`` if it has none."""
    path = dataset_dir(dataset, root) / MANIFEST_FILE
    return manifest_hash(path.read_bytes()) if path.is_file() else None


def write_manifest(directory: Path, frame: pd.DataFrame, classes: Sequence[str], info: dict) -> str:
    """Write ``manifest.csv`` and ``dataset.json`` into ``directory``; return the manifest hash."""
    ordered = sort_rows(frame.loc[:, list(COLUMNS)])
    data = manifest_bytes(ordered)
    digest = manifest_hash(data)
    _atomic_write(directory / MANIFEST_FILE, data)
    document = dict(info, classes=list(classes), manifest_sha256=digest, images=len(ordered))
    _atomic_write(directory / INFO_FILE, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    return digest


@dataclass
class Manifest:
    """An ingested dataset: its rows, hash, classes and directory, and the way to read its images."""

    frame: pd.DataFrame
    hash: str
    classes: list[str]
    directory: Path
    info: dict = field(default_factory=dict)
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.frame)

    def _array_row(self, source: str) -> np.ndarray:
        name, _, row = source.rpartition(ARRAY_SEPARATOR)
        if name not in self._arrays:
            # Memory-mapped so that reading a few rows of a large array costs a few pages.
            self._arrays[name] = np.load(self.directory / name, mmap_mode="r")
        return self._arrays[name][int(row)]

    def read_image(self, i: int) -> Image.Image:
        """Image of row ``i`` (position in ``frame``), decoded: mode ``L`` for a greyscale array
        dataset (e.g. Fashion-MNIST), else ``RGB``. Readers crop it as it is: a round trip
        through numpy cost about a sixth of the CPU reader's time on JPEGs."""
        source = self.frame["source"].iat[i]
        if ARRAY_SEPARATOR in source:
            return Image.fromarray(np.asarray(self._array_row(source), dtype=np.uint8))
        return open_rgb(io.BytesIO(self._file_bytes(i)))

    def read_encoded(self, i: int) -> bytes | None:
        """The file bytes of row ``i`` (position in ``frame``) as stored, undecoded; None for a row
        of a stored array."""
        return None if ARRAY_SEPARATOR in self.frame["source"].iat[i] else self._file_bytes(i)

    def _file_bytes(self, i: int) -> bytes:
        # Files can change after ingest (an imagefolder dataset links to the user's own folder):
        # features of other bytes would be stored under the old label. Hashing costs ~0.03 ms
        # per 40 kB JPEG here, about 1% of decoding it.
        path = self.directory / self.frame["source"].iat[i]
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.frame["sha256"].iat[i]:
            raise ImageChanged(f"{path}: changed since ingest (its SHA-256 is not the manifest's); "
                               "run `featurestore ingest` again to take the new file")
        return data

    def read_rgb(self, i: int) -> np.ndarray:
        """Image of row ``i`` (position in ``frame``) as ``uint8`` ``(H, W, 3)``."""
        return np.asarray(self.read_image(i).convert("RGB"))

    def read_rgb_batch(self, indices: Sequence[int]) -> np.ndarray:
        """Images of rows ``indices`` stacked as ``uint8`` ``(n, H, W, 3)``; all must share a size."""
        pixels = self.read_pixels_batch(indices)
        return _as_rgb(pixels, colour=pixels.ndim == 4)

    def read_pixels_batch(self, indices: Sequence[int]) -> np.ndarray:
        """Images of rows ``indices`` stacked as stored: ``uint8`` ``(n, H, W)`` for a greyscale array
        dataset, else ``(n, H, W, 3)``; all must share a size. An array dataset's rows are one slice."""
        positions = np.asarray(indices, dtype=np.int64)
        sources = self.frame["source"].to_numpy()[positions]
        names = {s.rpartition(ARRAY_SEPARATOR)[0] if ARRAY_SEPARATOR in s else None for s in sources}
        if len(names) == 1 and None not in names:
            (name,) = names
            self._array_row(sources[0])
            rows = np.fromiter((int(s.rpartition(ARRAY_SEPARATOR)[2]) for s in sources), np.int64, len(sources))
            return np.asarray(self._arrays[name][rows], dtype=np.uint8)
        sizes = set(zip(self.frame["width"].to_numpy()[positions], self.frame["height"].to_numpy()[positions]))
        if len(sizes) > 1:
            raise DatasetError(
                f"{self.directory / MANIFEST_FILE}: rows {positions[:5].tolist()}... have {len(sizes)} different "
                "sizes; read them one by one with read_rgb() or resize before stacking"
            )
        return np.stack([self.read_rgb(int(i)) for i in positions]) if len(positions) else np.zeros((0, 0, 0, 3), np.uint8)

    def is_one_array(self) -> bool:
        """Whether every row is a row of one stored array (e.g. Fashion-MNIST): one size, read in slices."""
        sources = self.frame["source"]
        if not len(sources) or not sources.str.contains(ARRAY_SEPARATOR, regex=False).all():
            return False
        return sources.str.rpartition(ARRAY_SEPARATOR)[0].nunique() == 1


def _as_rgb(pixels: np.ndarray, colour: bool) -> np.ndarray:
    """Stored array pixels (greyscale ``(..., H, W)`` or colour ``(..., H, W, 3)``) as RGB uint8."""
    if colour:
        return np.ascontiguousarray(pixels, dtype=np.uint8)
    return np.repeat(pixels[..., None], 3, axis=-1).astype(np.uint8, copy=False)


def _manifest_folders(base: Path) -> list[str]:
    return sorted(p.parent.name for p in base.glob(f"*/{MANIFEST_FILE}"))


def ingested_names(root: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the datasets with a manifest under ``root``, registered or named by the user."""
    return _manifest_folders(datasets_dir(root))


def read_info(directory: Path) -> dict:
    """The ``dataset.json`` kept in ``directory`` beside its manifest: classes, counts, ingest
    parameters (without parsing the manifest itself)."""
    return json.loads((directory / INFO_FILE).read_text())


def load_manifest(dataset: str, root: str | os.PathLike[str] | None = None) -> Manifest:
    """Load the manifest of ``dataset`` ingested under ``root`` (see ``featurestore.paths``)."""
    return manifest_at(dataset_dir(dataset, root), dataset)


def manifest_at(directory: Path, dataset: str | None = None) -> Manifest:
    """Load the manifest kept in ``directory`` (of ``dataset``, default: the folder's name)."""
    dataset = dataset or directory.name
    path = directory / MANIFEST_FILE
    try:
        data = path.read_bytes()
        info = read_info(directory)
    except FileNotFoundError:
        # Name what is there, so that a misspelt name reads as one rather than as a missing ingest.
        here = _manifest_folders(directory.parent)
        raise ManifestNotFound(
            f"{path}: no manifest for dataset {dataset!r} (ingested here: {', '.join(here) or 'none'}); "
            f"check the name, or run 'featurestore ingest {dataset}' first"
        ) from None
    digest = manifest_hash(data)
    if info.get("manifest_sha256", digest) != digest:
        # The class names come from dataset.json: another ingest's would mislabel every row.
        raise DatasetError(f"{directory / INFO_FILE}: does not belong to {path} (an ingest was stopped while "
                           f"moving them into place); run the ingest of {dataset!r} again")
    frame = pd.read_csv(io.BytesIO(data), dtype=_DTYPES, keep_default_na=False)
    if tuple(frame.columns) != COLUMNS:
        raise DatasetError(f"{path}: columns {list(frame.columns)} are not {list(COLUMNS)}; re-run the ingest")
    return Manifest(frame=frame, hash=digest, classes=list(info["classes"]), directory=directory, info=info)
