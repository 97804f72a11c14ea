"""Where featurestore keeps its files: one root directory, resolved the same way everywhere."""

from __future__ import annotations

import os
import re
from pathlib import Path

ENV_ROOT = "FEATURESTORE_HOME"
DEFAULT_ROOT = Path("~/.local/share/featurestore")

# Dataset and model names become directory and file names, so they are kept to a safe alphabet,
# and short enough for a file name with its suffixes (most file systems allow 255 bytes).
NAME_LIMIT = 100
_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.+-]{{0,{NAME_LIMIT - 1}}}$")
# What featurestore keeps directly under a root, each a directory.
_ROOT_DIRECTORIES = ("datasets", "stores", "runs")


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the featurestore root: ``root`` if given, else ``$FEATURESTORE_HOME``, else the default.

    An empty ``root`` is ``InvalidOption``: an unset variable in ``--root "$VAR"`` would make the
    current directory a root."""
    if isinstance(root, str) and not root.strip():
        from featurestore.errors import InvalidOption

        raise InvalidOption(f"--root {root!r}: give a directory, or leave --root out for $FEATURESTORE_HOME "
                            "or the default")
    chosen = root if root is not None else os.environ.get(ENV_ROOT) or DEFAULT_ROOT
    return Path(chosen).expanduser().resolve()


def existing_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The resolved root; ``RootNotFound`` if there is none. Commands that only read call it before
    saying "no stores": a typo in ``--root`` must not read as an empty store."""
    from featurestore.errors import RootNotFound

    path = resolve_root(root)
    if not path.is_dir():
        raise RootNotFound(f"no featurestore root at {path}; check --root or $FEATURESTORE_HOME")
    _check_directories(path)
    return path


def _not_a_directory(path: Path) -> Exception:
    from featurestore.errors import RootNotWritable

    return RootNotWritable(f"{path} is a file where featurestore keeps a directory; move it away")


def _check_directories(root: Path) -> None:
    """Refuse a root where a file stands in place of one of its directories: every command would
    fail on it later, deep inside its work."""
    for name in _ROOT_DIRECTORIES:
        entry = root / name
        if os.path.lexists(entry) and not entry.is_dir():
            raise _not_a_directory(entry)


def make_directory(path: Path) -> Path:
    """Create ``path`` and its parents if missing; ``RootNotWritable`` naming the file that stands
    where one of them must be a directory."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise _not_a_directory(next((p for p in (path, *path.parents) if os.path.lexists(p) and not p.is_dir()),
                                    path)) from None
    return path


def check_root(root: str | os.PathLike[str] | None = None, *, create: bool = True) -> Path:
    """The resolved root, created if missing; ``RootNotWritable`` (one line: why, what to do) if
    nothing can be written there. The flows and the library's ``extract`` call it first, so a bad
    ``--root`` fails before any work instead of deep inside a task. With ``create=False`` (extract
    and evaluate, which need what ingest put there) a missing root is ``RootNotFound``, and none is
    made where a typo pointed."""
    import tempfile

    from featurestore.errors import RootNotWritable

    path = resolve_root(root) if create else existing_root(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        raise RootNotWritable(
            f"{path}: featurestore root is not writable ({error.strerror}); pass --root DIR or set FEATURESTORE_HOME"
        ) from None
    if create:  # existing_root checked them already
        _check_directories(path)
    return path


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is safe to use as a file name, else raise ``InvalidName``."""
    from featurestore.errors import InvalidName

    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidName(
            f"invalid {kind} name {name!r}: use up to {NAME_LIMIT} letters, digits and '_', '.', '+', '-' "
            "(starting with a letter or digit)"
        )
    return name


def downloads_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding downloaded archives, shared by all datasets."""
    return resolve_root(root) / "downloads"


def datasets_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding every ingested dataset, one sub-directory each."""
    return resolve_root(root) / "datasets"


def dataset_dir(dataset: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding one dataset's unpacked files and its manifest."""
    return datasets_dir(root) / check_name("dataset", dataset)


def stores_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding every feature store, one sub-directory per dataset."""
    return resolve_root(root) / "stores"


def runs_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding evaluation runs and their reports."""
    return resolve_root(root) / "runs"
