"""Reading stores: numpy arrays for classifiers, DataFrames for people."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np
import pandas as pd

from featurestore.datasets.manifest import SPLITS, ingest_command, ingested_names
from featurestore.errors import (
    FeatureStoreError, StoreCorrupt, StoreIncomplete, StoreLocked, StoreNotFound, StoreSchemaTooNew,
)
from featurestore.paths import dataset_dir, existing_root
from featurestore.store import format as fmt
from featurestore.store.advice import rm_command, root_options, unfinished_under_final_name
from featurestore.store.h5io import corrupt, damage_reported, open_store
from featurestore.store.lock import holder_of, same_file
from featurestore.store.paths import lock_path, names_of, partial_path, root_of, shard_of, store_path
from featurestore.store.provenance import read_provenance
from featurestore.store.staleness import merge_command, rebuild_command, warn_if_stale


T = TypeVar("T")

#: a selection of more runs than rows / SCATTERED_RUNS is read in blocks (``_read_scattered``), not run by run
SCATTERED_RUNS = 64
BLOCK_BYTES = 16 << 20


class StoreReplaced(FeatureStoreError):
    """The file at a store's path was replaced while the store was being read, twice in a row."""


@dataclass(frozen=True)
class StoreArrays:
    """A store's contents as numpy arrays, rows in store order (optionally one split)."""

    features: np.ndarray
    ids: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    split: np.ndarray
    fold: np.ndarray
    failed: np.ndarray
    provenance: dict
    path: Path

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the request that produced the store."""
        return self.provenance["fingerprint"]

    def __repr__(self) -> str:
        # The arrays themselves would fill a notebook cell; their shapes say what is loaded.
        return (f"StoreArrays({self.path.name}: features {self.features.shape[0]} x {self.features.shape[1]} "
                f"{self.features.dtype}, {len(self.class_names)} classes, {int(self.failed.sum())} failed rows)")


def locate(dataset: str, model: str, root=None) -> Path:
    """Path of the complete store for (dataset, model), or a one-line error saying why there is none."""
    final = store_path(dataset, model, root)
    if final.exists():
        return final
    partial = partial_path(final)
    if partial.exists():
        holder = holder_of(lock_path(final))
        if holder:
            raise StoreLocked(f"{partial}: {holder} is still writing this store; wait for it to finish")
        merge = interrupted_merge(partial)
        if merge:
            raise StoreIncomplete(f"{partial}: the merge of the shards of {model} on {dataset} was interrupted; "
                                  f"run `{merge}` to resume it")
        raise StoreIncomplete(
            f"{partial}: extraction of {model} on {dataset} was interrupted; run extract again to resume it"
        )
    existing_root(root)  # a mistyped root is said as such, not as a store to extract
    # Named first, so that a misspelt model reads as one rather than as a store to extract.
    here = sorted(p.name.removesuffix(fmt.SUFFIX) for p in final.parent.glob(f"*{fmt.SUFFIX}"))
    missing = (f"{final}: no store for dataset {dataset!r} and model {model!r} "
               f"(stores of {dataset!r}: {', '.join(here) or 'none'})")
    ingested = ingested_names(root)
    if dataset not in ingested:
        # extract would only refuse it: there is no manifest to extract from
        ingest = " ".join([ingest_command(dataset, dataset_dir(dataset, root)), *root_options(root)])
        raise StoreNotFound(f"{missing}; dataset {dataset!r} is not ingested (ingested here: "
                            f"{', '.join(ingested) or 'none'}); check the names, or run `{ingest}` first")
    extract = " ".join(["featurestore extract --dataset", dataset, "--models", model, *root_options(root)])
    raise StoreNotFound(f"{missing}; check the names, or run `{extract}` if {model!r} is a backbone")


def interrupted_merge(partial: Path) -> str | None:
    """The command that resumes the interrupted ``merge-shards`` whose partial store file is ``partial``
    (with ``--overwrite`` beside a complete store, which only ``merge-shards --overwrite`` replaces);
    None if an extraction started it, or it cannot be read now (a writer holds it, or it is damaged).

    Resumed by ``featurestore extract`` instead, the merge's rows would be computed again on this host.
    """
    try:
        with open_store(partial) as file:
            extra = read_provenance(file).get("extra", {})
    except FeatureStoreError:
        return None
    return merge_resume_command(partial, extra)


def merge_resume_command(partial: Path, extra: dict) -> str | None:
    """``interrupted_merge`` for a partial whose provenance ``extra`` has been read already."""
    if "merge" not in extra:
        return None
    dataset, model = names_of(partial)
    final = partial.with_name(model + fmt.SUFFIX)
    return merge_command(dataset, model, extra, root_of(partial), *(("--overwrite",) if final.exists() else ()))


def replace_command(provenance: dict, path: Path) -> str:
    """The command that builds the store with ``provenance`` (at ``path``) again in its place:
    ``merge-shards --overwrite`` for a merge of shards (extract would compute every row on this
    host), else ``extract --overwrite`` (``rebuild_command``)."""
    extra = provenance.get("extra", {})
    if "merge" in extra:
        return merge_command(provenance["dataset"], provenance["model"], extra, root_of(path), "--overwrite")
    return rebuild_command(provenance, path)


def check_header(file: h5py.File, path: Path, *, may_lack: tuple[str, ...] = ()) -> dict:
    """Validate a store's schema version and structure and return its provenance.

    Cheap (every object's header and attributes, none of their data); damaged HDF5 internals or
    provenance raise ``StoreCorrupt``. ``may_lack``: keys whose absence is not damage (the writer's
    check of a partial whose completion was interrupted: it rebuilds ``/provenance``).
    """
    with damage_reported(path):
        if fmt.ATTR_SCHEMA not in file.attrs or fmt.ATTR_PROVENANCE not in file.attrs:
            raise StoreCorrupt(f"{path}: HDF5 file is not a featurestore store (no schema version); move it out of the store directory")
        schema = int(file.attrs[fmt.ATTR_SCHEMA])
        if schema > fmt.SCHEMA_VERSION:
            raise StoreSchemaTooNew(
                f"{path}: store has schema version {schema} but this featurestore reads up to {fmt.SCHEMA_VERSION}; "
                "upgrade featurestore to read it"
            )
        for key in (fmt.MATRIX, fmt.ROW_INDEX, fmt.ROWS_KEY, fmt.PROVENANCE_KEY, fmt.COMMITTED, fmt.ROW_STATUS):
            if key not in file and key not in may_lack:
                raise corrupt(path, f"store lacks /{key}")
        # Damage to an object's header or attributes shows here, not at the first read. Every object,
        # not only each key's group: pandas opens the objects in it too (/rows/table), and a store
        # damaged only there was reused by extract while every reader refused it.
        file.visititems(_read_attributes)
        with damage_reported(path, "its provenance attribute is not readable JSON"):
            provenance = read_provenance(file)
    _check_place(provenance, path)
    return provenance


def _read_attributes(_name: str, node: h5py.HLObject) -> None:
    """Read every attribute of ``node``, opened (its header read) by ``visititems``."""
    dict(node.attrs)


def _check_place(provenance: dict, path: Path) -> None:
    """``StoreCorrupt`` if a store under ``<root>/stores/`` lies at another (dataset, model)'s path
    than its own: copied or renamed there, it would be read as that store (features of one model
    reported under another's name)."""
    if path.parent.parent.name != "stores":
        return  # a store file kept elsewhere by the user is read by path, as given
    here = names_of(path)
    own = (provenance.get("dataset"), provenance.get("model"))
    if here != own:
        home = f"stores/{own[0]}/{own[1]}{fmt.SUFFIX}"
        shard = shard_of(path)
        if shard:
            # A shard's root is <root>/shards/D/M/i-of-n: this shard of the other store has its own.
            home = f"shards/{own[0]}/{own[1]}/{shard[0]}-of-{shard[1]}/{home}"
        raise StoreCorrupt(
            f"{path}: holds the store of {own[0]}/{own[1]}, not of {here[0]}/{here[1]} (copied or renamed "
            f"there?); move it to {shlex.quote(home)} or delete it with `{rm_command(path)}`")


def read_frame(path: Path, key: str, **options) -> pd.DataFrame:
    """The pandas frame under ``key``, read as a pandas user would; unreadable raises ``StoreCorrupt``."""
    with damage_reported(path, f"pandas cannot read /{key}"):
        frame = pd.read_hdf(path, key, **options)
    if not isinstance(frame, pd.DataFrame):
        # PyTables hands back None for a node whose pandas attributes are damaged.
        raise corrupt(path, f"pandas cannot read /{key} (no frame there)")
    return frame


def read_rows(path: Path, stop: int | None = None) -> pd.DataFrame:
    """The ``/rows`` table (index id; label, class_name, split, fold); its first ``stop`` rows only, if given."""
    return read_frame(path, fmt.ROWS_KEY, stop=stop)


def rows_of(file: h5py.File, path: Path, stop: int | None = None) -> pd.DataFrame:
    """The ``/rows`` table of the store open as ``file`` (at ``path``), as ``read_rows``.

    pandas reads by path, not through ``file``: a store renamed into place meanwhile (``extract
    --overwrite`` or ``featurestore run`` finishing) would give another store's rows, so that
    raises ``StoreReplaced``; read the store again.
    """
    rows = read_rows(path, stop)
    if not same_file(file.id.get_vfd_handle(), path):
        raise StoreReplaced(f"{path}: the store was replaced while it was being read (another process finished "
                            "extracting it); read it again")
    return rows


def read_consistently(path: Path, read: Callable[[h5py.File, dict, pd.DataFrame], T], stop: int | None = None) -> T:
    """``read(file, provenance, rows)`` on the store at ``path``, its header checked and ``rows``
    its own ``/rows`` (``rows_of``; the first ``stop`` rows only, if given). A store replaced during
    the read is read once more, whole: the new one is complete and in place; replaced again,
    ``StoreReplaced``."""
    try:
        return _read_once(path, read, stop)
    except StoreReplaced:
        return _read_once(path, read, stop)


def _read_once(path: Path, read: Callable[[h5py.File, dict, pd.DataFrame], T], stop: int | None) -> T:
    with open_store(path) as file:
        provenance = check_header(file, path)
        rows = rows_of(file, path, stop)
        if not np.array_equal(rows.index.to_numpy(dtype=str), fmt.read_ids(file, stop)):
            raise corrupt(path, "ids of /rows and /features differ")
        return read(file, provenance, rows)


def _runs(index: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted row numbers into maximal contiguous [start, stop) runs."""
    if len(index) == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = np.concatenate(([0], breaks))
    stops = np.concatenate((breaks, [len(index)]))
    return [(int(index[a]), int(index[b - 1]) + 1) for a, b in zip(starts, stops)]


def read_matrix(dataset: h5py.Dataset, index: np.ndarray | None) -> np.ndarray:
    """Read all rows, or the given sorted rows, straight into one freshly allocated array."""
    if index is None:
        out = np.empty(dataset.shape, dtype=dataset.dtype)
        if out.size:
            dataset.read_direct(out)
        return out
    out = np.empty((len(index), dataset.shape[1]), dtype=dataset.dtype)
    runs = _runs(index)
    if len(runs) > dataset.shape[0] // SCATTERED_RUNS:
        _read_scattered(dataset, index, out)
        return out
    offset = 0
    for start, stop in runs:
        dataset.read_direct(out, source_sel=np.s_[start:stop], dest_sel=np.s_[offset:offset + stop - start])
        offset += stop - start
    return out


def _read_scattered(dataset: h5py.Dataset, index: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` with the sorted rows ``index`` of ``dataset``, reading it in blocks of about
    ``BLOCK_BYTES`` from each next wanted row and keeping the wanted rows of each block.

    For rows scattered in many short runs (a split whose rows alternate with other splits'): one
    HDF5 read per run costs far more than reading the rows between them."""
    block_rows = max(1, BLOCK_BYTES // max(1, dataset.shape[1] * dataset.dtype.itemsize))
    block = np.empty((min(block_rows, dataset.shape[0]), dataset.shape[1]), dtype=dataset.dtype)
    done = 0
    while done < len(index):
        start = int(index[done])
        stop = min(start + len(block), dataset.shape[0])
        upto = int(np.searchsorted(index, stop))  # the wanted rows below stop
        dataset.read_direct(block, source_sel=np.s_[start:stop], dest_sel=np.s_[:stop - start])
        out[done:upto] = block[index[done:upto] - start]
        done = upto


def load_arrays(dataset: str, model: str, split: str | None = None, root=None) -> StoreArrays:
    """Load a complete store as numpy arrays; ``split`` selects train, val or test rows.

    Warns (``StaleStoreWarning``) if the dataset was ingested again since the store was built."""
    arrays = read_arrays(locate(dataset, model, root), split)
    warn_if_stale(arrays.provenance, arrays.path, root)
    return arrays


def read_arrays(path: Path, split: str | None = None, head: int | None = None) -> StoreArrays:
    """Load the store at ``path`` as numpy arrays (see ``load_arrays``); ``head``: only the first
    ``head`` rows (of the split), the rest of the matrix left unread."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    # A split's first rows are known only from the whole /rows table; the store's are its first rows.
    stop = head if split is None else None

    def read(file: h5py.File, provenance: dict, rows: pd.DataFrame) -> StoreArrays:
        if not bool(file.attrs.get(fmt.ATTR_COMPLETE, False)):
            unfinished = unfinished_under_final_name(int(file[fmt.COMMITTED][0]), provenance["rows"])
            raise StoreIncomplete(f"{path}: store is {unfinished}; replace it with `{replace_command(provenance, path)}`")
        index = None
        if split is not None:
            index = np.flatnonzero(rows["split"].to_numpy() == split)
        if head is not None:
            index = (np.arange(len(rows)) if index is None else index)[:head]
        if index is not None:
            rows = rows.iloc[index]
        status = file[fmt.ROW_STATUS][:] if index is None else file[fmt.ROW_STATUS][:][index]
        return StoreArrays(
            features=read_matrix(file[fmt.MATRIX], index),
            ids=rows.index.to_numpy(dtype=str),
            labels=rows["label"].to_numpy(dtype=np.int64),
            class_names=list(provenance["classes"]),
            split=rows["split"].to_numpy(dtype=str),
            fold=rows["fold"].to_numpy(dtype=np.int64),
            failed=status == fmt.STATUS_FAILED,
            provenance=provenance,
            path=path,
        )

    return read_consistently(path, read, stop)


def load(dataset: str, model: str, split: str | None = None, root=None) -> pd.DataFrame:
    """Load a complete store as a DataFrame: feature columns, then id, label, class_name, split, fold, failed.

    ``failed`` is True for rows whose image could not be decoded at extraction: their features are
    zeros, so drop them (``frame[~frame.failed]``) before training on the features. Warns
    (``StaleStoreWarning``) if the dataset was ingested again since the store was built.
    """
    arrays = read_arrays(locate(dataset, model, root), split)
    warn_if_stale(arrays.provenance, arrays.path, root)
    frame = pd.DataFrame(arrays.features, columns=fmt.feature_columns(arrays.features.shape[1]), copy=False)
    meta = {
        "id": arrays.ids,
        "label": arrays.labels,
        "class_name": np.asarray(arrays.class_names, dtype=object)[arrays.labels],
        "split": arrays.split,
        "fold": arrays.fold,
        "failed": arrays.failed,
    }
    # Columns added one by one leave the feature block uncopied on pandas 2 and 3 alike
    # (pd.concat copies on 2 unless copy=False, which 3 deprecates).
    for name, values in meta.items():
        frame[name] = values
    return frame
