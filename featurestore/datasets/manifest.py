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
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from featurestore.datasets.errors import DatasetError, ImageChanged, ManifestDamaged, ManifestNotFound
from featurestore.datasets.images import open_rgb
from featurestore.datasets.registry import dataset_names, get_dataset, source_datasets
from featurestore.errors import first_line
from featurestore.files import write_bytes_aside, write_text_aside
from featurestore.paths import dataset_dir, datasets_dir

MANIFEST_FILE = "manifest.csv"
INFO_FILE = "dataset.json"
QUARANTINE_FILE = "quarantine.csv"
# Written only when an ingest commits (with the manifest): either left in a folder without a
# manifest means one was ingested there and lost it. Files unpacked from a download are not such
# a sign: a first ingest unpacks them (and its ``.unpacked`` marker) before it has any manifest.
_COMMITTED_FILES = (MANIFEST_FILE, INFO_FILE, QUARANTINE_FILE)
COLUMNS = ("id", "source", "label", "class_name", "split", "fold", "width", "height", "mode", "sha256")
SPLITS = ("train", "val", "test")
_DTYPES = {
    "id": str, "source": str, "label": np.int64, "class_name": str, "split": str,
    "fold": np.int64, "width": np.int64, "height": np.int64, "mode": str, "sha256": str,
}
# What every dataset.json holds (``write_manifest`` writes it), and what an ingest adds: the request
# that made it, which ``featurestore datasets`` shows and a pipeline run ingests again.
_INFO_TYPES = {"classes": list, "images": int}
_RECORDED_TYPES = {"dataset": str, "official_split": bool, "parameters": dict}
_RECORDED_PARAMETERS = ("source", "ratios", "seed", "folds", "limit_per_class")
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


def manifest_hash(data: bytes) -> str:
    """The hash of a manifest: the SHA-256 of its ``manifest.csv`` bytes."""
    return hashlib.sha256(data).hexdigest()


def manifest_check(dataset: str, root: str | os.PathLike[str] | None = None) -> tuple[str | None, str | None]:
    """``(hash, None)`` for ``dataset``'s manifest as it is now on disk; ``(None, damage)`` if it or
    its dataset.json is missing or damaged (one lost from a folder holding the files an ingest
    leaves), ``damage`` the one-line error naming the file and the ingest that repairs it;
    ``(None, None)`` if the dataset was not ingested here (no folder, or one whose first ingest has
    not finished). Parsing checks the manifest (about 0.1 s for 70,000 rows)."""
    try:
        return manifest_at(dataset_dir(dataset, root), dataset).hash, None
    except ManifestNotFound:
        return None, None
    except DatasetError as error:
        return None, str(error)


def current_manifest_hash(dataset: str, root: str | os.PathLike[str] | None = None) -> str | None:
    """The hash of ``dataset``'s manifest as it is now on disk, or ``None`` if it has none or it is
    damaged (see ``manifest_check``): a store then has no current manifest to be compared with,
    rather than one "ingested again since", and whatever loads the manifest names the damage."""
    return manifest_check(dataset, root)[0]


def write_manifest(directory: Path, frame: pd.DataFrame, classes: Sequence[str], info: dict) -> str:
    """Write ``manifest.csv`` and ``dataset.json`` into ``directory``; return the manifest hash."""
    ordered = sort_rows(frame.loc[:, list(COLUMNS)])
    data = manifest_bytes(ordered)
    digest = manifest_hash(data)
    # Readers must never see half a manifest.
    write_bytes_aside(directory / MANIFEST_FILE, data)
    document = dict(info, classes=list(classes), manifest_sha256=digest, images=len(ordered))
    write_text_aside(directory / INFO_FILE, json.dumps(document, indent=2, sort_keys=True) + "\n")
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


def _ingested_folders(base: Path) -> list[str]:
    """The folders under ``base`` that a finished ingest wrote to, with their manifest or without."""
    return sorted({p.parent.name for name in _COMMITTED_FILES for p in base.glob(f"*/{name}")})


def ingested_names(root: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the datasets ingested under ``root``, registered or named by the user: those with a
    manifest, and those that lost it (``manifest_at`` then says they are damaged)."""
    return _ingested_folders(datasets_dir(root))


def is_ingested(directory: Path) -> bool:
    """Whether a finished ingest wrote to ``directory``: its manifest is there, or a file written with it."""
    return any((directory / name).is_file() for name in _COMMITTED_FILES)


def ingest_command(dataset: str, directory: Path) -> str:
    """The command that ingests ``dataset`` anew: its name for a registered dataset, with the source
    it needs for one made from a user's images; a name of the user's takes ``--name`` and the source
    dataset. The source and source dataset are those recorded in ``directory``'s dataset.json, or
    every choice where it cannot be read."""
    made_by, source = _recorded_request(directory)
    source_option = f" --source {shlex.quote(source) if source else 'DIR|ARCHIVE|URL'}"
    if dataset in dataset_names():
        return f"featurestore ingest {dataset}{source_option if get_dataset(dataset).needs_source else ''}"
    return f"featurestore ingest {made_by or '|'.join(source_datasets())}{source_option} --name {dataset}"


def _recorded_request(directory: Path) -> tuple[str | None, str | None]:
    """The source dataset and ``--source`` that ``directory``'s dataset.json says made it, each
    ``None`` where it cannot be read."""
    try:
        info = json.loads((directory / INFO_FILE).read_bytes())
    except (OSError, ValueError):
        return None, None
    if not isinstance(info, dict):
        return None, None
    made_by = info.get("dataset") if info.get("dataset") in source_datasets() else None
    parameters = info.get("parameters")
    source = parameters.get("source") if isinstance(parameters, dict) else None
    return made_by, source if isinstance(source, str) and source else None


def damaged(path: Path, reason: str, dataset: str) -> ManifestDamaged:
    """The error for ``dataset``'s ``path`` (its manifest or dataset.json) that cannot be used: why,
    and the ingest that writes it anew."""
    return ManifestDamaged(f"{path}: damaged or missing ({reason}); run `{ingest_command(dataset, path.parent)}` again")


def _absent(path: Path, dataset: str) -> DatasetError:
    """The error for ``dataset``'s ``path`` (its manifest or dataset.json) not there: damage where a
    finished ingest left its other files beside it, else a dataset not ingested."""
    left = [name for name in _COMMITTED_FILES if (path.parent / name).is_file()]
    if not left:
        return _not_ingested(path.parent, dataset)
    return damaged(path, f"not there, though {left[0]} is", dataset)


def _not_ingested(directory: Path, dataset: str) -> ManifestNotFound:
    # Name what is there, so that a misspelt name reads as one rather than as a missing ingest.
    here = _ingested_folders(directory.parent)
    return ManifestNotFound(
        f"{directory / MANIFEST_FILE}: no manifest for dataset {dataset!r} (ingested here: {', '.join(here) or 'none'}); "
        f"check the name, or run `{ingest_command(dataset, directory)}` first"
    )


def _info_problem(info: object, recorded: bool) -> str | None:
    """What makes ``info`` other than a dataset.json that ingest writes, or ``None``."""
    if not isinstance(info, dict):
        return "not a JSON object"
    for key, kind in {**_INFO_TYPES, **(_RECORDED_TYPES if recorded else {})}.items():
        if key not in info:
            return f"no {key!r} entry"
        if not isinstance(info[key], kind):
            return f"its {key!r} is not a JSON {'array' if kind is list else 'object' if kind is dict else kind.__name__}"
    missing = [key for key in _RECORDED_PARAMETERS if recorded and key not in info["parameters"]]
    return f"no {missing[0]!r} in its 'parameters'" if missing else None


def read_info(directory: Path, dataset: str | None = None, *, recorded: bool = False) -> dict:
    """The ``dataset.json`` kept in ``directory`` beside its manifest: classes, counts, ingest
    parameters (without parsing the manifest itself). With ``recorded``, the ingest request must be
    in it too (``write_manifest`` alone does not write one).

    ``ManifestNotFound`` if ``dataset`` (default: the folder's name) was never ingested there;
    ``ManifestDamaged`` if the file is missing beside what an ingest leaves, is not JSON, or lacks
    what ingest writes.
    """
    dataset = dataset or directory.name
    path = directory / INFO_FILE
    try:
        info = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise _absent(path, dataset) from None
    except OSError as error:
        raise damaged(path, error.strerror, dataset) from None
    except ValueError as error:  # not JSON, or not UTF-8
        raise damaged(path, f"not JSON: {error}", dataset) from None
    problem = _info_problem(info, recorded)
    if problem:
        raise damaged(path, problem, dataset)
    return info


def checked_info(directory: Path, dataset: str | None = None, *, recorded: bool = False) -> dict:
    """``read_info``, with the manifest beside it checked against the hash dataset.json records:
    ``ManifestDamaged`` if it is missing, changed or cut short. Only hashed, not parsed (about 10 ms
    for 70,000 rows), so that listing the datasets stays quick."""
    dataset = dataset or directory.name
    path = directory / MANIFEST_FILE
    info = read_info(directory, dataset, recorded=recorded)
    _check_hash(path, _manifest_data(path, dataset), info, dataset)
    return info


def _manifest_data(path: Path, dataset: str) -> bytes:
    """The bytes of the manifest ``path``; ``ManifestNotFound`` or ``ManifestDamaged`` if there are none."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _absent(path, dataset) from None
    except OSError as error:
        raise damaged(path, error.strerror, dataset) from None


def _check_hash(path: Path, data: bytes, info: dict, dataset: str) -> str:
    """The hash of ``data``, the bytes of the manifest ``path``; ``ManifestDamaged`` if it is not the
    one ``info`` (its dataset.json) records: another ingest's class names would mislabel every row."""
    digest = manifest_hash(data)
    if info.get("manifest_sha256", digest) != digest:
        raise damaged(path, f"its SHA-256 is not the one {INFO_FILE} records: it was changed or cut short since "
                            "ingest, or an ingest was stopped while moving the two into place", dataset)
    return digest


def _rows_problem(frame: pd.DataFrame) -> str | None:
    """What makes ``frame`` other than manifest rows ingest writes (the labels' range aside), or ``None``."""
    if tuple(frame.columns) != COLUMNS:
        return f"columns {list(frame.columns)} are not {list(COLUMNS)}"
    if frame.empty:
        return "no rows"
    repeated = frame["id"][frame["id"].duplicated()]
    if len(repeated):
        return f"image id {repeated.iat[0]!r} appears more than once"
    unknown = sorted(set(frame["split"]) - set(SPLITS))
    if unknown:
        return f"split {unknown[0]!r} is not one of {', '.join(SPLITS)}"
    if frame["label"].min() < 0:
        return f"label {frame['label'].min()} is negative"
    return None


def _read_rows(path: Path, data: bytes, dataset: str) -> pd.DataFrame:
    """The rows of the manifest ``path`` (its bytes ``data``); ``ManifestDamaged`` if they are not
    what ingest writes."""
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=_DTYPES, keep_default_na=False)
    except ValueError as error:  # pandas' parser errors, a value of the wrong type, bytes not UTF-8
        raise damaged(path, f"not a manifest: {first_line(error, named=False)}", dataset) from None
    problem = _rows_problem(frame)
    if problem:
        raise damaged(path, problem, dataset)
    return frame


def load_manifest(dataset: str, root: str | os.PathLike[str] | None = None) -> Manifest:
    """Load the manifest of ``dataset`` ingested under ``root`` (see ``featurestore.paths``)."""
    return manifest_at(dataset_dir(dataset, root), dataset)


def manifest_at(directory: Path, dataset: str | None = None) -> Manifest:
    """Load the manifest kept in ``directory`` (of ``dataset``, default: the folder's name).

    ``ManifestNotFound`` if the dataset was not ingested there; ``ManifestDamaged`` (naming the file
    and the ingest that writes it anew) if its manifest or dataset.json is missing or damaged."""
    dataset = dataset or directory.name
    path = directory / MANIFEST_FILE
    data = _manifest_data(path, dataset)
    info = read_info(directory, dataset)
    digest = _check_hash(path, data, info, dataset)
    frame = _read_rows(path, data, dataset)
    classes = info["classes"]
    if frame["label"].max() >= len(classes):
        raise damaged(path, f"label {frame['label'].max()} but {len(classes)} classes in {INFO_FILE}", dataset)
    return Manifest(frame=frame, hash=digest, classes=list(classes), directory=directory, info=info)
