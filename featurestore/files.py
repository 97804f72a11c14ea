"""Files written aside, then renamed over their name: a reader sees the old file or the whole new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_aside(path: Path, *, unique: bool = False, fsync: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path`` for a writer to fill; when the block ends
    normally it is renamed over ``path``, otherwise removed.

    The temporary name is ``.<name>.partial<suffix>``: hidden, so that folder listings (class
    folders, a dataset directory emptied after a failed first ingest) pass over it, and ending in
    ``path``'s suffix for writers that add one (``np.save``, ``np.savez``). ``unique`` makes it
    unique for writers that may race on one ``path`` (another process exporting the same model);
    ``fsync`` puts the data on disk before the rename, for a file that a crash must not leave short
    under its final name.
    """
    if unique:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".partial{path.suffix}")
        os.close(fd)
        temporary = Path(name)
    else:
        temporary = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        yield temporary
        if fsync:
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_aside(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``written_aside``."""
    with written_aside(path) as temporary:
        temporary.write_bytes(data)


def write_text_aside(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through ``written_aside``."""
    write_bytes_aside(path, text.encode("utf-8"))
