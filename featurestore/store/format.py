"""The on-disk format of a feature store, in one place.

One HDF5 file per (dataset, model) at ``<root>/stores/<dataset>/<model>.h5``. While it is
being written the file is ``<model>.h5.partial``; renaming it to ``<model>.h5`` is the atomic
completion mark. ``docs/store-format.md`` documents every field listed here.

Layout (every pandas-visible key is a group pandas wrote itself or a byte-for-byte copy of
what pandas writes, so ``pd.read_hdf(path, key)`` works without featurestore):

* ``/features`` pandas "fixed" frame: index = image id, columns ``f0000``..; its
  ``block0_values`` is the feature matrix itself (rows x dim, contiguous, allocated at creation
  so that filling it never changes HDF5 metadata: a killed writer cannot corrupt the file).
* ``/rows`` pandas "table" frame: index = image id; label, class_name, split, fold.
* ``/provenance`` pandas "table" frame: one row per provenance field (field, value as JSON).
* ``/_extraction/committed_rows`` int64[1]: rows ``[0, committed_rows)`` are durable.
* ``/_extraction/row_status`` int8[rows]: 0 pending, 1 ok, 2 failed to decode.
* root attributes: ``featurestore_schema_version`` (int), ``featurestore_provenance`` (JSON),
  ``featurestore_fingerprint`` (hex), ``featurestore_complete`` (uint8, 1 once complete).
"""

from __future__ import annotations

import errno
import os
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from featurestore.errors import (
    FeatureStoreError, FileLocksUnsupported, StoreCorrupt, StoreLocked, StoreNotFound, first_line,
)
from featurestore.paths import check_name, resolve_root, stores_dir
from featurestore.store.lock import LOCKS_UNSUPPORTED, locks_unsupported

SCHEMA_VERSION = 1

SUFFIX = ".h5"
PARTIAL_SUFFIX = ".h5.partial"
LOCK_SUFFIX = ".h5.lock"

FEATURES_KEY = "features"
ROWS_KEY = "rows"
PROVENANCE_KEY = "provenance"
MATRIX = f"{FEATURES_KEY}/block0_values"
ROW_INDEX = f"{FEATURES_KEY}/axis1"
EXTRACTION_GROUP = "_extraction"
COMMITTED = f"{EXTRACTION_GROUP}/committed_rows"
ROW_STATUS = f"{EXTRACTION_GROUP}/row_status"

ATTR_SCHEMA = "featurestore_schema_version"
ATTR_PROVENANCE = "featurestore_provenance"
ATTR_FINGERPRINT = "featurestore_fingerprint"
ATTR_COMPLETE = "featurestore_complete"

STATUS_PENDING, STATUS_OK, STATUS_FAILED = 0, 1, 2
DTYPES = ("float32", "float16")

# What h5py, PyTables (under pandas) and json raise when a file opens but its objects,
# attributes or strings are damaged; PyTables even raises SystemError on garbled string sizes.
DAMAGE_ERRORS = (KeyError, OSError, RuntimeError, ValueError, SystemError)


def store_path(dataset: str, model: str, root=None) -> Path:
    """Path of the complete store for (dataset, model)."""
    return stores_dir(root) / check_name("dataset", dataset) / (check_name("model", model) + SUFFIX)


def names_of(path: Path) -> tuple[str, str]:
    """The (dataset, model) a store file's path names, complete or partial: ``<dataset>/<model>.h5``."""
    return path.parent.name, path.name.removesuffix(PARTIAL_SUFFIX).removesuffix(SUFFIX)


def root_of(path: Path) -> Path | None:
    """The root whose ``stores/`` directory holds the store file ``path`` (``<root>/stores/<dataset>/<model>.h5``,
    complete or partial); None for a file kept elsewhere."""
    return path.parents[2] if path.parent.parent.name == "stores" else None


_SHARD_LABEL = re.compile(r"(\d+)-of-(\d+)")


def shard_of(path: Path) -> tuple[int, int] | None:
    """``(index, count)`` if the store file ``path`` is a shard's, under its own root
    ``<root>/shards/<dataset>/<model>/<index>-of-<count>/``; else None."""
    root = root_of(path)
    label = _SHARD_LABEL.fullmatch(root.name) if root is not None else None
    if label is None or len(root.parents) < 3 or root.parents[2].name != "shards":
        return None
    return int(label[1]), int(label[2])


def dataset_root_of(path: Path) -> Path | None:
    """The root whose dataset the store file ``path`` was extracted from: the store's own root, or
    for a shard's, the root whose ``shards/`` folder holds it (where ``extract --shard`` runs)."""
    return root_of(path).parents[3] if shard_of(path) else root_of(path)


def root_options(root) -> tuple[str, ...]:
    """``("--root", ROOT)``, quoted for a shell, for a suggested command about ``root``; nothing for the
    root a command without ``--root`` uses (``$FEATURESTORE_HOME`` or the default), so that the
    command runs as printed."""
    resolved = resolve_root(root)
    return () if resolved == resolve_root() else ("--root", shlex.quote(str(resolved)))


def rm_command(path: Path) -> str:
    """The command that deletes the store file ``path`` and nothing else.

    ``featurestore rm D M`` with the root the file lies under (a shard is a store under a root of
    its own: without it, ``rm`` would delete the merged store) and, for a ``.partial``, ``--partial``
    (else ``rm`` deletes the complete store beside it too). A file outside a store directory is no
    store ``featurestore rm`` can name: plain ``rm PATH``.
    """
    root = root_of(path)
    if root is None:
        return f"rm {shlex.quote(str(path))}"
    partial = ("--partial",) if path.name.endswith(PARTIAL_SUFFIX) else ()
    return " ".join(["featurestore rm", *map(shlex.quote, names_of(path)), *partial, *root_options(root)])


def rebuild_advice(path: Path) -> str:
    """What to do about the damaged store file ``path``: the command that deletes it, then extract it
    again (a shard with its ``--shard``)."""
    shard = shard_of(path)
    again = f"extract it again with --shard {shard[0]}/{shard[1]}" if shard else "extract again"
    return f"delete it with `{rm_command(path)}` and {again}"


def unfinished_under_final_name(committed: int, rows: int) -> str:
    """How every message describes a file under a store's final name that is not marked complete.

    Writers fill ``<model>.h5.partial`` and rename it only once complete, so such a file is a
    partial moved there; nothing resumes it (extract resumes partials only)."""
    return (f"not marked complete ({committed} of {rows} rows committed) though it has a finished store's name "
            "(a partial file moved there)")


def partial_path(final: Path) -> Path:
    """Path of the in-progress file that becomes ``final`` when complete."""
    return final.with_name(final.name[: -len(SUFFIX)] + PARTIAL_SUFFIX)


def lock_path(final: Path) -> Path:
    """Path of the lock file that serialises writers of ``final``."""
    return final.with_name(final.name[: -len(SUFFIX)] + LOCK_SUFFIX)


def feature_columns(dim: int) -> list[str]:
    """Column names of the feature matrix in pandas: f0000, f0001, ..."""
    width = max(4, len(str(dim - 1)))
    return [f"f{i:0{width}d}" for i in range(dim)]


def read_ids(file: h5py.File, stop: int | None = None) -> np.ndarray:
    """The image ids of ``/features`` (the first ``stop`` only, if given) as str, decoded from the
    UTF-8 bytes the writer stores."""
    return np.char.decode(file[ROW_INDEX][:stop], "utf-8")


def create_preallocated(group: h5py.Group, name: str, shape: tuple[int, ...], dtype) -> h5py.Dataset:
    """Create a contiguous dataset whose file space is allocated now and never written as fill;
    ``name`` may be a path below ``group`` whose groups exist (``COMMITTED`` below the file).

    Early allocation means later writes touch raw data only, never HDF5 metadata, so a process
    killed mid-write leaves a file whose structure is exactly as it was after creation.
    """
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    space = h5py.h5s.create_simple(shape)
    dsid = h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(np.dtype(dtype)), space, dcpl=dcpl)
    return h5py.Dataset(dsid)


def copy_attributes(source: h5py.HLObject, target: h5py.HLObject) -> None:
    """Copy every attribute with its exact HDF5 type and shape.

    PyTables (and so pandas) decodes attributes by their stored type; copying the raw bytes
    keeps the replaced arrays indistinguishable from the ones pandas wrote.
    """
    for name in source.attrs:
        attr = source.attrs.get_id(name)
        file_type, space = attr.get_type(), attr.get_space()
        copy = h5py.h5a.create(target.id, name.encode(), file_type, space)
        if space.get_simple_extent_type() != h5py.h5s.NULL:
            raw = np.empty(attr.shape, dtype=f"V{file_type.get_size()}")
            attr.read(raw, mtype=file_type)
            copy.write(raw, mtype=file_type)


def open_h5(path: Path, mode: str = "r", *, locking: bool = True) -> h5py.File:
    """Open a store file, turning h5py's errors into one-line featurestore errors.

    ``locking``: take HDF5's file lock, which fails while a writer has the file open. On a file
    system without locks a read-only open goes on without one; a writer is refused there.
    """
    try:
        try:
            return _open_sharing(path, mode, locking)
        except OSError as error:
            if mode != "r" or not locking or error.errno not in LOCKS_UNSUPPORTED:
                raise
            # No featurestore writer runs without locks (WriterLock refuses to), so there is no
            # writer for the lock to keep out. HDF5's own best-effort mode forgives ENOSYS only.
            return _open_sharing(path, mode, False)
    except FileNotFoundError:
        raise StoreNotFound(f"{path}: no such store; run `featurestore ls` to see the stores that exist") from None
    except OSError as error:
        raise translate_os_error(path, error) from None


def _open_sharing(path: Path, mode: str, locking: bool) -> h5py.File:
    try:
        return h5py.File(path, mode, locking=locking)
    except OSError as error:
        # HDF5 shares one handle per file within a process; reuse the writer's flags then.
        if "locking flag values don't match" not in str(error):
            raise
        return h5py.File(path, mode, locking=not locking)


def directory_in_the_way(path: Path) -> StoreCorrupt:
    """The error for a directory where a store file belongs (``featurestore rm`` deletes files only)."""
    return StoreCorrupt(f"{path}: is a directory, not a store file; featurestore never deletes directories: "
                        "move or delete it yourself")


def translate_os_error(path: Path, error: OSError):
    """Map an HDF5 open failure to the featurestore error that says what to do."""
    if path.is_dir():
        return directory_in_the_way(path)
    text = str(error)
    if error.errno in LOCKS_UNSUPPORTED:
        return locks_unsupported(path.parent, os.strerror(error.errno))
    if error.errno == errno.EAGAIN or "unable to lock file" in text:
        return StoreLocked(
            f"{path}: another process is writing this store; wait for it to finish "
            "(or stop it) and try again"
        )
    if "truncated file" in text:
        return StoreCorrupt(
            f"{path}: file is truncated (HDF5 reports a shorter file than it expects); {rebuild_advice(path)}"
        )
    if "file signature not found" in text or "not an HDF5 file" in text:
        return StoreCorrupt(
            f"{path}: not an HDF5 file; move it out of the store directory or delete it with `{rm_command(path)}`"
        )
    return StoreCorrupt(f"{path}: cannot be opened as a store ({first_line(error, named=False)}); "
                        f"{rebuild_advice(path)}")


def corrupt(path: Path, problem: str) -> StoreCorrupt:
    """The one-line error for a damaged store file: what is wrong and the command that deletes it."""
    return StoreCorrupt(f"{path}: {problem}; {rebuild_advice(path)}")


@contextmanager
def damage_reported(path: Path, what: str = "its HDF5 internals are damaged") -> Iterator[None]:
    """Raise ``StoreCorrupt`` (``what`` and the library's first line) for errors of reading a damaged
    store; featurestore's own errors pass unchanged."""
    try:
        yield
    except FeatureStoreError:
        raise
    except DAMAGE_ERRORS as error:
        _raise_if_locks_unsupported(path, error)
        raise corrupt(path, f"{what} ({first_line(error, named=False)})") from None


# How HDF5 (under pandas, which has no locking option) reports a failed lock.
_HDF5_LOCK_FAILURE = re.compile(r"unable to lock file, errno = (\d+), error message = '([^']*)'")


def _raise_if_locks_unsupported(path: Path, error: Exception) -> None:
    """Raise ``FileLocksUnsupported`` if ``error`` is HDF5 failing to lock ``path`` on a file system
    without locks: HDF5's default forgives ENOSYS but not ENOLCK, and the file is not damaged."""
    failure = _HDF5_LOCK_FAILURE.search(str(error))
    if failure and int(failure[1]) in LOCKS_UNSUPPORTED:
        raise FileLocksUnsupported(
            f"{path}: this file system does not support file locks (flock: {failure[2]}) and HDF5 under pandas "
            "opens files only with them; set HDF5_USE_FILE_LOCKING=FALSE in the environment to read it, or use "
            "a --root on a local disk"
        ) from None


@contextmanager
def open_store(path: Path, *, locking: bool = True) -> Iterator[h5py.File]:
    """Open a store read-only; damage found while reading it raises ``StoreCorrupt``, never h5py's error."""
    with open_h5(path, locking=locking) as file, damage_reported(path):
        yield file


def fsync_path(path: Path) -> None:
    """Flush a file's (or directory's) data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
