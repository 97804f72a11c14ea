"""One writer per store: an advisory lock file beside it, released by the kernel if the writer dies."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from featurestore.errors import RootNotWritable, StoreLocked


class WriterLock:
    """Exclusive ``flock`` on ``<model>.h5.lock``; records the holder's pid for error messages."""

    def __init__(self, path: Path, store: Path):
        self.path = path
        self.store = store
        self._fd: int | None = None

    def acquire(self, wait_seconds: float = 2.0) -> WriterLock:
        """Take the lock, waiting briefly (a reader may be probing it); raise ``StoreLocked`` if held,
        ``RootNotWritable`` if the lock file cannot be opened for writing."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RootNotWritable(
                f"{self.path}: cannot open the store's lock file for writing ({error.strerror}); the featurestore "
                f"root is not writable by this user: make {self.path.parent} writable or use another --root"
            ) from None
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_pid(fd)
                    os.close(fd)
                    raise StoreLocked(
                        f"{self.store}: another process{holder} is writing this store; "
                        "wait for it to finish (or stop it) and try again"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (the lock file stays: removing it would race with the next writer)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f" (pid {text})" if text.isdigit() else ""


def holder_of(lock_file: Path) -> str | None:
    """Return a description of the process writing the store, or None if nobody is."""
    if not lock_file.exists():
        return None
    fd = os.open(lock_file, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "another process" + _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
