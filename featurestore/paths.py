"""Where featurestore keeps its files: one root directory, resolved the same way everywhere."""

from __future__ import annotations

import os
import re
from pathlib import Path

ENV_ROOT = "FEATURESTORE_HOME"
DEFAULT_ROOT = Path("~/.local/share/featurestore")

# Dataset and model names become directory and file names, so they are kept to a safe alphabet.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the featurestore root: ``root`` if given, else ``$FEATURESTORE_HOME``, else the default."""
    chosen = root if root is not None else os.environ.get(ENV_ROOT) or DEFAULT_ROOT
    return Path(chosen).expanduser().resolve()


def existing_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The resolved root; ``RootNotFound`` if there is none. Commands that only read call it before
    saying "no stores": a typo in ``--root`` must not read as an empty store."""
    from featurestore.errors import RootNotFound

    path = resolve_root(root)
    if not path.is_dir():
        raise RootNotFound(f"no featurestore root at {path}; check --root or $FEATURESTORE_HOME")
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
    return path


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is safe to use as a file name, else raise ``InvalidName``."""
    from featurestore.errors import InvalidName

    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidName(
            f"invalid {kind} name {name!r}: use letters, digits and '_', '.', '+', '-' "
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
