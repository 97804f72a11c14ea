"""Where a store's files lie: the path of a (dataset, model) store, of its partial and lock files,
and what a store file's path says (its names, its root, its shard)."""

from __future__ import annotations

import re
from pathlib import Path

from featurestore.paths import check_name, stores_dir
from featurestore.store.format import LOCK_SUFFIX, PARTIAL_SUFFIX, SUFFIX


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


def partial_path(final: Path) -> Path:
    """Path of the in-progress file that becomes ``final`` when complete."""
    return final.with_name(final.name[: -len(SUFFIX)] + PARTIAL_SUFFIX)


def lock_path(final: Path) -> Path:
    """Path of the lock file that serialises writers of ``final``."""
    return final.with_name(final.name[: -len(SUFFIX)] + LOCK_SUFFIX)
