"""Whether a request's store already exists: decided without loading any model."""

from __future__ import annotations

from featurestore.errors import StoreConflict, StoreStale
from featurestore.store import format as fmt
from featurestore.store.provenance import precision_name, recorded_precision
from featurestore.store.reader import check_header
from featurestore.store.spec import StoreSpec
from featurestore.store.staleness import earlier_manifest


def store_state(spec: StoreSpec, root=None) -> str:
    """``"complete"``, ``"partial"`` or ``"missing"`` for ``spec``.

    Raises ``StoreStale`` if a complete store for (dataset, model) was built from an earlier
    manifest of the dataset, ``StoreConflict`` if it was built from other inputs otherwise, and
    ``StoreCorrupt`` if the file there is not a readable store.
    """
    final = fmt.store_path(spec.dataset, spec.model, root)
    if final.exists():
        with fmt.open_store(final) as file:
            # A store that cannot be read is not "complete", however its fingerprint reads.
            provenance = check_header(file, final)
            stored = str(file.attrs.get(fmt.ATTR_FINGERPRINT, ""))
        # A shard is a store under its own root: `rm` without that root would delete the merged store.
        remove = f"featurestore rm {spec.dataset} {spec.model}" + (
            f" --root {final.parents[2]}" if "shard" in spec.preprocessing else "")
        replace = ("extract it again with --overwrite (overwrite=True) to replace it once the new one is complete, "
                   f"or remove it with `{remove}`")
        if stored == spec.fingerprint:
            recorded = recorded_precision(provenance)
            if spec.require_precision and recorded != spec.precision:
                raise StoreConflict(f"{final}: store was computed in {precision_name(recorded)}, not in the "
                                    f"requested {spec.precision}; {replace}")
            return "complete"
        if provenance.get("manifest_hash") != spec.manifest_hash:
            raise StoreStale(f"{final}: store was {earlier_manifest(spec.dataset)}; {replace}")
        raise StoreConflict(
            f"{final}: store was built from other inputs (fingerprint {stored[:12]} != requested "
            f"{spec.fingerprint[:12]}: other weights, layer or preprocessing); {replace}"
        )
    return "partial" if fmt.partial_path(final).exists() else "missing"
