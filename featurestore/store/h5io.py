"""Low-level HDF5 I/O of store files: open them (HDF5's file lock, its errors turned into one-line
featurestore errors), allocate datasets so that later writes never touch metadata, copy attributes
byte for byte, report damage found while reading as ``StoreCorrupt``, and fsync."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from featurestore.errors import (
    FeatureStoreError, FileLocksUnsupported, StoreCorrupt, StoreLocked, StoreNotFound, first_line,
)
from featurestore.store.advice import rebuild_advice, rm_command
from featurestore.store.lock import LOCKS_UNSUPPORTED, locks_unsupported

# What h5py, PyTables (under pandas) and json raise when a file opens but its objects,
# attributes or strings are damaged; PyTables even raises SystemError on garbled string sizes.
DAMAGE_ERRORS = (KeyError, OSError, RuntimeError, ValueError, SystemError)


def create_preallocated(group: h5py.Group, name: str, shape: tuple[int, ...], dtype) -> h5py.Dataset:
    """Create a contiguous dataset whose file space is allocated now and never written as fill;
    ``name`` may be a path below ``group`` whose groups exist (``format.COMMITTED`` below the file).

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
