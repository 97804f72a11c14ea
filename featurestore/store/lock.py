"""One writer per store (or per dataset being ingested): an advisory lock file beside it, released
by the kernel if the writer dies."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path

from featurestore.errors import FeatureStoreError, FileLocksUnsupported, RootNotWritable, StoreLocked

# What flock() fails with on a file system that has no locks (Lustre without -o flock, many FUSE
# mounts, NFS without a lock daemon), as opposed to a lock that another process holds.
LOCKS_UNSUPPORTED = frozenset({errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP})


class WriterLock:
    """Exclusive ``flock`` on ``path`` (``<model>.h5.lock`` for a store); records the holder's pid
    for error messages.

    The lock file exists only while a writer holds it: the holder removes it before unlocking,
    and a process that was waiting on the removed file sees that and locks the new one.
    """

    def __init__(self, path: Path, store: Path, *, doing: str = "writing this store",
                 busy: type[FeatureStoreError] = StoreLocked):
        self.path = path
        self.store = store  # what the lock guards, as named in the error
        self.doing = doing
        self.busy = busy
        self._fd: int | None = None

    def acquire(self, wait_seconds: float = 2.0) -> WriterLock:
        """Take the lock, waiting briefly (a reader may be probing it); raise ``busy`` (``StoreLocked``)
        if held, ``RootNotWritable`` if the lock file cannot be opened for writing, and its subclass
        ``FileLocksUnsupported`` if the file system has no locks."""
        deadline = time.monotonic() + wait_seconds
        while True:
            fd = self._open()
            try:
                self._flock(fd, deadline)
            except BaseException:
                os.close(fd)
                raise
            if same_file(fd, self.path):
                break
            # The writer we waited for removed this file on release: a lock on it excludes nobody.
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RootNotWritable(
                f"{self.path}: cannot open this lock file for writing ({error.strerror}), and {self.doing} needs it; "
                f"the featurestore root is not writable by this user: make {self.path.parent} writable or use "
                "another --root"
            ) from None

    def _flock(self, fd: int, deadline: float) -> None:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self.busy(
                        f"{self.store}: another process{_read_pid(fd)} is {self.doing}; "
                        "wait for it to finish (or stop it) and try again"
                    ) from None
                time.sleep(0.05)
            except OSError as error:
                if error.errno not in LOCKS_UNSUPPORTED:
                    raise
                raise locks_unsupported(self.path.parent, error.strerror, self.doing) from None

    def release(self) -> None:
        """Remove the lock file and give the lock up (no ``.lock`` is left beside the store)."""
        if self._fd is not None:
            # One that cannot be removed (a read-only directory) is harmless: the next writer locks it.
            with contextlib.suppress(OSError):
                self.path.unlink()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def locks_unsupported(directory: Path, reason: str, doing: str = "writing this store") -> FileLocksUnsupported:
    """The one-line error for a writer in ``directory``, on a file system whose ``flock`` fails with
    ``reason`` (the system's words for one of ``LOCKS_UNSUPPORTED``)."""
    return FileLocksUnsupported(
        f"{directory}: this file system does not support file locks (flock: {reason}), which keep two processes "
        f"from {doing} at once; use a --root on a local disk, or mount this one with locks on (Lustre: -o flock)"
    )


def same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``: not removed, nor replaced by another
    renamed over it.

    An open file's inode is never freed or linked again, so equal inodes after a read by path
    mean the path named this file throughout the read.
    """
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)


def _read_pid(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f" (pid {text})" if text.isdigit() else ""


def holder_of(lock_file: Path) -> str | None:
    """Return a description of the process writing the store, or None if nobody is."""
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except FileNotFoundError:  # no writer holds it (a writer removes the file as it finishes)
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "another process" + _read_pid(fd)
        except OSError as error:
            if error.errno not in LOCKS_UNSUPPORTED:
                raise
            # No featurestore writer runs without locks (WriterLock refuses to), so nobody is writing.
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
