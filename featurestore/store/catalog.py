"""What stores exist under a root, without loading any matrix."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from featurestore.datasets.manifest import manifest_check
from featurestore.errors import FeatureStoreError, StoreCorrupt, StoreNotFound, StoreSchemaTooNew
from featurestore.paths import existing_root, resolve_root, stores_dir
from featurestore.store import format as fmt
from featurestore.store.advice import unfinished_under_final_name
from featurestore.store.h5io import open_store
from featurestore.store.lock import holder_of
from featurestore.store.paths import lock_path, names_of
from featurestore.store.reader import check_header, merge_resume_command, replace_command
from featurestore.store.staleness import stale_reason

CATALOG_COLUMNS = ["dataset", "model", "rows", "failed", "dim", "dtype", "complete", "state", "stale", "writing",
                   "bytes", "created", "fingerprint", "path", "problem"]


def store_files(root=None) -> list[Path]:
    """Every store file (complete or partial) under the root, sorted by dataset then model."""
    base = stores_dir(root)
    if not base.is_dir():
        return []
    files = [p for p in base.glob("*/*") if p.name.endswith((fmt.SUFFIX, fmt.PARTIAL_SUFFIX))]
    return sorted(files, key=lambda p: (p.parent.name, p.name))


def final_path_of(path: Path) -> Path:
    """The complete-store path a (possibly partial) store file belongs to."""
    if path.name.endswith(fmt.PARTIAL_SUFFIX):
        return path.with_name(path.name[: -len(fmt.PARTIAL_SUFFIX)] + fmt.SUFFIX)
    return path


def describe(path: Path, manifest_of: Callable[[str], tuple[str | None, str | None]]) -> dict | None:
    """One catalog row for a store file; unreadable and stale stores (see ``staleness``) get the
    reason in ``problem``, and so do the stores of a dataset whose manifest is damaged (whether they
    are stale cannot be told). ``manifest_of(dataset)``: ``manifest_check`` of the dataset. None if
    the file is gone since it was listed (a partial renamed to its store, a store removed)."""
    final = final_path_of(path)
    partial = path != final
    entry = dict.fromkeys(CATALOG_COLUMNS)
    dataset, model = names_of(path)
    entry.update(dataset=dataset, model=model, path=str(path), complete=False, stale=False, writing=False)
    writer = holder_of(lock_path(final)) if partial else None
    try:
        entry["bytes"] = path.stat().st_size
        # A partial is read without the lock: its rows are filled in place while its header stays put.
        with open_store(path, locking=not partial) as file:
            # A partial whose finalize was killed lacks /provenance; extract finishes it, so it is
            # "interrupted", not "unreadable" (whose advice, `featurestore rm`, would lose its rows).
            provenance = check_header(file, path, may_lack=(fmt.PROVENANCE_KEY,) if partial else ())
            committed = int(file[fmt.COMMITTED][0])
            finished = bool(file.attrs.get(fmt.ATTR_COMPLETE, False))
            entry.update(
                rows=provenance["rows"], dim=provenance["dim"], dtype=provenance["dtype"],
                created=provenance["created_at"], fingerprint=provenance["fingerprint"],
                complete=finished and not partial,
                failed=int(np.count_nonzero(file[fmt.ROW_STATUS][:committed] == fmt.STATUS_FAILED)),
            )
    except (FileNotFoundError, StoreNotFound):
        return None
    except FeatureStoreError as error:
        entry.update(_unreadable(error, partial, writer))
        return entry
    current, damage = manifest_of(provenance["dataset"])
    entry["problem"] = stale_reason(provenance, current, path) or (
        damage and f"whether it is stale cannot be told: {damage}")
    entry["stale"] = bool(current and entry["problem"])
    if entry["complete"]:
        entry["state"] = "stale" if entry["stale"] else "complete"
    elif not partial:
        entry.update(state="unfinished", problem=(f"{unfinished_under_final_name(committed, entry['rows'])}; "
                                                  f"replace it with `{replace_command(provenance, path)}`"))
    else:
        progress = f"writing {committed}/{entry['rows']}" if writer else f"interrupted {committed}/{entry['rows']}"
        # An unfinished store of an earlier manifest is never resumed: extract starts it again.
        entry.update(writing=bool(writer), state=f"stale, {progress}" if entry["stale"] else progress)
        merge = None if writer or entry["problem"] else merge_resume_command(path, provenance.get("extra", {}))
        if merge:  # extract would compute the merged rows again on this host
            entry["problem"] = f"an interrupted merge of shards; run `{merge}` to resume it"
    return entry


def _unreadable(error: FeatureStoreError, partial: bool, writer: str | None) -> dict:
    """The state and problem of a store file whose header cannot be read."""
    if not partial:
        return {"state": "unreadable", "problem": str(error)}
    if writer:
        # Its header is written when a pass starts and rewritten when it finishes: read meanwhile.
        return {"state": "writing", "writing": True, "problem": None}
    if isinstance(error, (StoreCorrupt, StoreSchemaTooNew)):
        # Cut short while being created or finished: extract discards such a partial by itself.
        return {"state": "interrupted", "problem": "its partial file was cut short while being created or finished; "
                "the next `featurestore extract` of it starts it again"}
    return {"state": "unreadable", "problem": str(error)}


def _manifests(root) -> Callable[[str], tuple[str | None, str | None]]:
    """``manifest_check`` of a dataset in ``root``, each manifest read and hashed once, not once
    per store of it."""
    return functools.cache(lambda name: manifest_check(name, root))


def catalog(root=None, dataset: str | None = None) -> pd.DataFrame:
    """One row per store under the root (only ``dataset``'s, if given): dataset, model, rows,
    failed (rows whose image failed at extraction), dim, dtype, complete, state, stale, writing,
    bytes, created, fingerprint, path, problem (why a store is not plainly complete, and what to run).

    ``state`` is the text ``featurestore ls`` shows: ``complete``, ``stale``, ``unfinished``,
    ``unreadable``, or for a partial file ``writing N/M`` or ``interrupted N/M`` (N of M rows
    committed; no N/M where its header cannot be read), prefixed by ``stale, `` if it is of an
    earlier manifest. Select on the columns, not on that text: ``stale`` (built from an earlier
    manifest of the dataset: rebuild it) and ``writing`` (another process is writing it now).

    ``RootNotFound`` if there is no root: a mistyped root must not read as one without stores."""
    files = [p for p in store_files(root) if dataset in (None, p.parent.name)]
    if not files:
        existing_root(root)
    manifest_of = _manifests(root)
    entries = []
    for path in files:
        entry = describe(path, manifest_of)
        final = final_path_of(path)
        if entry is None and final != path and final not in files:
            # The extraction finished since the listing: its partial moved on to the store.
            entry = describe(final, manifest_of)
        if entry is not None:
            entries.append(entry)
    frame = pd.DataFrame(entries, columns=CATALOG_COLUMNS)
    frame["created"] = pd.to_datetime(frame["created"], utc=True)
    # Whole numbers even where an unreadable store leaves a gap (plain ints would turn to 30.0).
    return frame.astype({"rows": "Int64", "failed": "Int64", "dim": "Int64", "stale": bool, "writing": bool})


def stale_shards(dataset: str, root=None) -> dict[str, str]:
    """Shard stores of ``dataset`` built from an earlier manifest, as ``{"<model> <i>-of-<n>": why it
    is stale, with the command that rebuilds it}``.

    A shard is a store under its own root, ``<root>/shards/<dataset>/<model>/<i>-of-<n>/``, which
    ``catalog`` does not list; its staleness is judged against the dataset's manifest in ``root``.
    """
    manifest_of = _manifests(root)
    stale = {}
    # <root>/shards/<dataset>/<model>/<i>-of-<n> is a root of its own
    for shard_root in sorted((resolve_root(root) / "shards" / dataset).glob("*/*")):
        for path in store_files(shard_root):
            entry = describe(path, manifest_of) if path.parent.name == dataset else None
            if entry is not None and entry["stale"]:
                stale.setdefault(f"{shard_root.parent.name} {shard_root.name}", entry["problem"])
    return stale


def stale_models(dataset: str, root=None) -> list[str]:
    """Models whose store of ``dataset`` was built from an earlier manifest (see ``staleness``)."""
    frame = catalog(root, dataset)
    return frame.loc[frame["stale"], "model"].drop_duplicates().tolist()
