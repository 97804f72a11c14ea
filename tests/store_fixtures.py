"""Building real stores for tests: deterministic features, a real writer, real files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from featurestore.datasets.manifest import write_manifest
from featurestore.paths import dataset_dir
from featurestore.store import RowTable, StoreSpec, StoreWriter

CLASSES = ["cat", "dog", "bird"]


def rows_for(n: int) -> RowTable:
    """n rows: 70% train, 15% val, 15% test, labels cycling over three classes, 5 folds over train."""
    index = np.arange(n)
    split = np.where(index < 0.7 * n, "train", np.where(index < 0.85 * n, "val", "test"))
    fold = np.where(split == "train", index % 5, -1)
    return RowTable(ids=[f"img/{i:06d}.jpg" for i in index], labels=index % 3, class_names=CLASSES,
                    split=split, fold=fold)


def features_for(start: int, stop: int, dim: int) -> np.ndarray:
    """Features of rows [start, stop): row i depends on i alone, so any resume order gives the same matrix."""
    return np.stack([np.random.default_rng(i).standard_normal(dim, dtype=np.float32) for i in range(start, stop)])


def spec_for(dataset: str = "toy", model: str = "net", dim: int = 32, dtype: str = "float32", **changes) -> StoreSpec:
    """A store request with fixed, fake-but-plausible provenance."""
    fields = dict(dataset=dataset, model=model, manifest_hash="m" * 64, weights_sha256="w" * 64,
                  preprocessing={"size": 224, "crop": 224, "interpolation": "bicubic",
                                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "layer": "avgpool"},
                  dim=dim, dtype=dtype)
    fields.update(changes)
    return StoreSpec(**fields)


def write_store(root, n: int = 200, batch: int = 16, extra: dict | None = None, **spec_changes):
    """Write and finalize a complete store (``extra``: the extractor's provenance); return its path."""
    spec = spec_for(**spec_changes)
    with StoreWriter.open(spec, rows_for(n), root=root, commit_bytes=1 << 14) as writer:
        for start in range(writer.committed_rows, n, batch):
            writer.write(features_for(start, min(start + batch, n), spec.dim))
        return writer.finalize(extra)


def write_manifest_of(root, rows: RowTable, dataset: str = "toy") -> str:
    """A real manifest and dataset.json of ``dataset`` holding ``rows``, as ingest writes them; its hash.

    A store's staleness is judged against it: one recording another manifest hash is stale."""
    frame = pd.DataFrame({"id": rows.ids, "source": rows.ids, "label": rows.labels,
                          "class_name": np.asarray(rows.class_names)[rows.labels], "split": rows.split,
                          "fold": rows.fold, "width": 8, "height": 8, "mode": "RGB", "sha256": "0" * 64})
    directory = dataset_dir(dataset, root)
    directory.mkdir(parents=True, exist_ok=True)
    return write_manifest(directory, frame, list(rows.class_names), {})
