"""Real stores for the evaluate tests: scikit-learn's digits written with ``StoreWriter``.

Two feature views of the same images play two backbones: random Fourier features of the
pixels (model ``fourier``) and the raw pixels (any other model name) (a different, nonlinear view, so stacking has something to combine).
"""

from __future__ import annotations

import hashlib

import numpy as np
from sklearn.datasets import load_digits
from sklearn.kernel_approximation import RBFSampler
from sklearn.model_selection import train_test_split

from featurestore.store import RowTable, StoreSpec, StoreWriter

DATASET = "digits"
MODELS = ("pixels", "fourier")
N_FOLDS = 3


def digits_rows(seed: int = 0) -> tuple[np.ndarray, RowTable]:
    """Digits images (n, 64) and their rows: stratified 60/20/20 train/val/test, 3 train folds,
    ordered by split then id as a manifest is."""
    X, y = load_digits(return_X_y=True)
    index = np.arange(len(y))
    train, rest = train_test_split(index, test_size=0.4, stratify=y, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    split = np.empty(len(y), dtype=object)
    split[train], split[val], split[test] = "train", "val", "test"
    fold = np.full(len(y), -1)
    fold[np.sort(train)] = np.arange(len(train)) % N_FOLDS
    ids = np.array([f"{s}/{i:05d}" for s, i in zip(split, index)])
    order = np.lexsort((ids, [("train", "val", "test").index(s) for s in split]))
    rows = RowTable(ids=ids[order], labels=y[order], class_names=[str(d) for d in range(10)],
                    split=split[order], fold=fold[order])
    return X[order].astype(np.float32), rows


def view(model: str, pixels: np.ndarray) -> np.ndarray:
    """The features a pretend backbone ``model`` computes from the pixels."""
    if model != "fourier":
        return pixels
    return RBFSampler(gamma=0.001, n_components=128, random_state=0).fit_transform(pixels).astype(np.float32)


def write_store(root, model: str, pixels: np.ndarray, rows: RowTable, dataset: str = DATASET,
                failed: np.ndarray | None = None, finalize: bool = True) -> None:
    """Write ``view(model, pixels)`` as the (dataset, model) store under ``root``."""
    features = view(model, pixels)
    spec = StoreSpec(dataset=dataset, model=model, manifest_hash=hashlib.sha256(rows.ids.tobytes()).hexdigest(),
                     weights_sha256=hashlib.sha256(model.encode()).hexdigest(),
                     preprocessing={"view": model}, dim=features.shape[1])
    with StoreWriter.open(spec, rows, root=root) as writer:
        writer.write(features, failed)
        if finalize:
            writer.finalize()


def write_digits_stores(root, models=MODELS, seed: int = 0) -> None:
    """Write one digits store per model under ``root``."""
    pixels, rows = digits_rows(seed)
    for model in models:
        write_store(root, model, pixels, rows)
