"""What messages about a store tell the user to do: the shell commands to run (quoted, with the
``--root`` they need) and the shared wording of a store's problems."""

from __future__ import annotations

import shlex
from pathlib import Path

from featurestore.paths import resolve_root
from featurestore.store.format import PARTIAL_SUFFIX
from featurestore.store.paths import names_of, root_of, shard_of


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
