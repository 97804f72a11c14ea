"""What a store is made from: the request (``StoreSpec``) and the rows it holds (``RowTable``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from featurestore.datasets.manifest import SPLITS
from featurestore.errors import FeatureStoreError
from featurestore.paths import check_name
from featurestore.store.format import DTYPES


class InvalidStoreInput(FeatureStoreError, ValueError):
    """A store request or row table that cannot be written as given."""


def canonical_json(value) -> str:
    """JSON with sorted keys and no whitespace: the same bytes on every machine."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


#: the request fields a fingerprint hashes: equal fields, equal features
FINGERPRINT_FIELDS = ("dataset", "manifest_hash", "model", "weights_sha256", "preprocessing", "dim", "dtype")


@dataclass(frozen=True)
class StoreSpec:
    """Everything that determines a store's contents; its fingerprint decides reuse.

    Two requests with the same fingerprint would compute the same matrix, so a complete store
    with that fingerprint is reused and never rewritten.

    ``precision`` (fp32, bf16, fp16; None: not said) is how the rows are computed. It is not
    fingerprinted: a store made on a GPU in bf16 stays the store of a CPU host's request. A
    partial records it at creation and is resumed only by a request computing in the same one, so
    no store mixes rows of two precisions. ``require_precision`` (an explicit ``--precision``)
    also makes a complete store recorded in another precision a conflict, replaced with overwrite.
    """

    dataset: str
    model: str
    manifest_hash: str
    weights_sha256: str
    preprocessing: Mapping = field(default_factory=dict)
    dim: int = 0
    dtype: str = "float32"
    precision: str | None = None
    require_precision: bool = False

    def __post_init__(self):
        check_name("dataset", self.dataset)
        check_name("model", self.model)
        if self.dtype not in DTYPES:
            raise InvalidStoreInput(f"dtype {self.dtype!r} is not supported; use one of {', '.join(DTYPES)}")
        if not isinstance(self.dim, int) or self.dim <= 0:
            raise InvalidStoreInput(f"feature dimension must be a positive integer, got {self.dim!r}")
        object.__setattr__(self, "preprocessing", json.loads(canonical_json(dict(self.preprocessing))))

    def fingerprint_fields(self) -> dict:
        """The fields hashed into the fingerprint."""
        return {name: getattr(self, name) for name in FINGERPRINT_FIELDS}

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of ``fingerprint_fields()``."""
        return fingerprint_of(self.fingerprint_fields())


def fingerprint_of(fields: Mapping) -> str:
    """Fingerprint of a mapping of fingerprint fields (as stored in a store's provenance)."""
    return hashlib.sha256(canonical_json(dict(fields)).encode()).hexdigest()


@dataclass(frozen=True)
class RowTable:
    """One entry per image, in store row order."""

    ids: np.ndarray
    labels: np.ndarray
    class_names: Sequence[str]
    split: np.ndarray
    fold: np.ndarray

    def __post_init__(self):
        ids = np.asarray(self.ids, dtype=object).astype(str)
        labels = np.asarray(self.labels, dtype=np.int64)
        split = np.asarray(self.split, dtype=object).astype(str)
        fold = np.asarray(self.fold, dtype=np.int64)
        n = len(ids)
        if n == 0:
            raise InvalidStoreInput("the row table is empty: a store needs at least one image")
        for name, column in (("labels", labels), ("split", split), ("fold", fold)):
            if len(column) != n:
                raise InvalidStoreInput(f"row table: {name} has {len(column)} entries but there are {n} ids")
        if len(pd.unique(ids)) != n:
            duplicate = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
            raise InvalidStoreInput(f"row table: image id {duplicate!r} appears more than once; ids must be unique")
        unknown = sorted(set(split) - set(SPLITS))
        if unknown:
            raise InvalidStoreInput(f"row table: unknown split value(s) {unknown}; use {', '.join(SPLITS)}")
        if labels.min() < 0 or labels.max() >= len(self.class_names):
            raise InvalidStoreInput(
                f"row table: labels must lie in 0..{len(self.class_names) - 1} (one per class name), "
                f"found {labels.min()}..{labels.max()}"
            )
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", [str(c) for c in self.class_names])
        object.__setattr__(self, "split", split)
        object.__setattr__(self, "fold", fold)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_manifest(cls, frame: pd.DataFrame, classes: Sequence[str] | None = None) -> RowTable:
        """Rows from a manifest frame (columns id, label, class_name, split, fold).

        ``classes`` gives every class name in label order; by default it is derived from the
        frame, which misses classes that have no row.
        """
        if classes is None:
            pairs = frame[["label", "class_name"]].drop_duplicates().sort_values("label")
            classes = [""] * (int(pairs["label"].max()) + 1)
            for label, name in pairs.itertuples(index=False):
                classes[int(label)] = str(name)
        return cls(
            ids=frame["id"].to_numpy(),
            labels=frame["label"].to_numpy(),
            class_names=list(classes),
            split=frame["split"].to_numpy(),
            fold=frame["fold"].to_numpy(),
        )

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame indexed by image id, as stored under ``/rows``."""
        return pd.DataFrame(
            {
                "label": self.labels,
                "class_name": np.asarray(self.class_names, dtype=object)[self.labels],
                "split": self.split,
                "fold": self.fold,
            },
            index=pd.Index(self.ids, name="id"),
        )
