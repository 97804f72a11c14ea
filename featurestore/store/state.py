"""Whether a request's store already exists: decided without loading any model."""

from __future__ import annotations

from featurestore.errors import StoreConflict, StoreStale
from featurestore.store import format as fmt
from featurestore.store.advice import rm_command, unfinished_under_final_name
from featurestore.store.h5io import open_store
from featurestore.store.paths import partial_path, store_path
from featurestore.store.provenance import precision_name, recorded_precision
from featurestore.store.reader import check_header
from featurestore.store.spec import StoreSpec
from featurestore.store.staleness import earlier_manifest

#: how a conflict's message says to replace the store when extract asks; a merge names its own command
REPLACE_BY_EXTRACT = "extract it again with --overwrite (overwrite=True)"


def store_state(spec: StoreSpec, root=None, *, redo_failed: bool = False, replace_by: str = REPLACE_BY_EXTRACT) -> str:
    """``"complete"``, ``"partial"`` or ``"missing"`` for ``spec``; with ``redo_failed``, a complete
    store with rows that failed at extraction (images unreadable then, maybe not now) is
    ``"failed rows"``, to be extracted again (``"partial"`` once that has started). ``replace_by``:
    what a conflict's message tells to do to replace the store, as the command that asked would.

    Raises ``StoreStale`` if a complete store for (dataset, model) differs from the request only
    in being built from an earlier manifest of the dataset, ``StoreConflict`` if it was built
    from other inputs otherwise (the message names them) or is not marked complete, and
    ``StoreCorrupt`` if the file there is not a readable store.
    """
    final = store_path(spec.dataset, spec.model, root)
    if final.exists():
        with open_store(final) as file:
            # A store that cannot be read is not "complete", however its fingerprint reads.
            provenance = check_header(file, final)
            stored = str(file.attrs.get(fmt.ATTR_FINGERPRINT, ""))
            finished = bool(file.attrs.get(fmt.ATTR_COMPLETE, False))
            committed = int(file[fmt.COMMITTED][0])
        replace = (f"{replace_by} to replace it once the new one is complete, or remove it with "
                   f"`{rm_command(final)}`")
        if not finished:
            raise StoreConflict(f"{final}: store is {unfinished_under_final_name(committed, provenance['rows'])}; "
                                f"{replace}")
        if stored == spec.fingerprint:
            recorded = recorded_precision(provenance)
            if spec.require_precision and recorded != spec.precision:
                raise StoreConflict(f"{final}: store was computed in {precision_name(recorded)}, not in the "
                                    f"requested {spec.precision}; {replace}")
            if redo_failed and provenance.get("failed_rows"):
                return "partial" if partial_path(final).exists() else "failed rows"
            return "complete"
        found = differences(provenance, spec)
        if list(found) == ["manifest_hash"]:
            raise StoreStale(f"{final}: store was {earlier_manifest(spec.dataset)}; {replace}")
        raise StoreConflict(f"{final}: store was built from other inputs than requested "
                            f"({'; '.join(found.values())}); {replace}")
    return "partial" if partial_path(final).exists() else "missing"


def differences(provenance: dict, spec: StoreSpec) -> dict[str, str]:
    """The fingerprint fields in which a store (its ``provenance``) differs from ``spec``, each with
    a phrase saying how: ``{"weights_sha256": "weights: sha256 57934424a1b2 (pypi:...) stored, ..."}``."""
    requested = spec.fingerprint_fields()
    found = {}
    for name, wanted in requested.items():
        held = provenance.get(name)
        if held == wanted:
            continue
        if name == "manifest_hash":
            found[name] = earlier_manifest(spec.dataset) if held else "another manifest"
        elif name == "weights_sha256":
            source = provenance.get("extra", {}).get("weights_source")
            found[name] = (f"weights: sha256 {str(held)[:12]}{f' ({source})' if source else ''} stored, "
                                 f"{wanted[:12]} requested (check --weights)")
        elif name == "preprocessing":
            held = held or {}
            keys = sorted(k for k in {*held, *wanted} if held.get(k) != wanted.get(k))
            phrases = []
            if "shard" in keys:
                # Other rows (a shard's store copied into another shard's place), not other preprocessing.
                phrases.append(f"it holds {_rows_of(held)}, not {_rows_of(wanted)}")
                keys.remove("shard")
            if keys:
                phrases.append(f"preprocessing: {', '.join(keys)}")
            found[name] = "; ".join(phrases)
        else:
            found[name] = f"{name}: {held} stored, {wanted} requested"
    return found


def _rows_of(preprocessing: dict) -> str:
    """Which rows a store of ``preprocessing`` holds: ``shard i-of-n`` or ``the whole dataset``."""
    shard = preprocessing.get("shard")
    return f"shard {shard[0]}-of-{shard[1]}" if shard else "the whole dataset"
