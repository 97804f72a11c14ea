"""File checksums written as ``"<algorithm>:<hex>"`` (``md5`` or ``sha256``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

ALGORITHMS = ("md5", "sha256")
RECORDED = ".sha256"


def parse(checksum: str) -> tuple[str, str]:
    """Split ``"md5:abc…"`` into ``("md5", "abc…")``; raise ``ValueError`` on another form."""
    algorithm, _, digest = checksum.partition(":")
    if algorithm not in ALGORITHMS or not digest:
        raise ValueError(f"checksum {checksum!r} is not 'md5:<hex>' or 'sha256:<hex>'")
    return algorithm, digest.lower()


def digest_file(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of the file at ``path`` (``algorithm``: a ``hashlib`` name)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def matches(path: Path, checksum: str) -> tuple[bool, str]:
    """Whether ``path`` has ``checksum``; also return the checksum actually found."""
    algorithm, expected = parse(checksum)
    found = digest_file(path, algorithm)
    return found == expected, f"{algorithm}:{found}"


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def stamp(path: Path, checksum: str) -> None:
    """Remember that ``path`` (at its current size and mtime) has ``checksum``."""
    info = path.stat()
    record = {"checksum": checksum, "size": info.st_size, "mtime_ns": info.st_mtime_ns}
    _stamp_path(path).write_text(json.dumps(record))


def stamped(path: Path, checksum: str) -> bool:
    """Whether ``path`` was verified against ``checksum`` and has not changed since.

    This is what lets a rerun skip re-hashing multi-gigabyte archives.
    """
    try:
        record = json.loads(_stamp_path(path).read_text())
        info = path.stat()
    except (FileNotFoundError, ValueError):
        return False
    return record == {"checksum": checksum, "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def recorded(path: Path, suffix: str = RECORDED) -> str | None:
    """The checksum recorded beside ``path`` (in ``<path><suffix>``), by default the one recorded
    once the first download of a file that has none published was used."""
    try:
        return path.with_name(path.name + suffix).read_text().strip() or None
    except FileNotFoundError:
        return None
