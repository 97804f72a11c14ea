"""Reproducible subsets, splits and folds.

Every choice is driven by a seeded SHA-256 rank of the image id, not by a random generator, so
the result depends only on the ids and the seed: the same on every machine and library version.
Sorts are stable, so the (deterministic) input order breaks the astronomically rare rank ties.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from featurestore.datasets.errors import InvalidIngestOption

DEFAULT_RATIOS = (0.7, 0.15, 0.15)
DEFAULT_FOLDS = 5


def rank(ids: pd.Series, seed: int) -> pd.Series:
    """A seeded pseudo-random but machine-independent sort key for each id (63 bits of SHA-256)."""
    prefix = f"{seed}\0".encode()
    digests = b"".join([hashlib.sha256(prefix + str(value).encode()).digest()[:8] for value in ids.tolist()])
    keys = (np.frombuffer(digests, dtype=">u8") >> np.uint64(1)).astype(np.int64)
    return pd.Series(keys, index=ids.index)


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, val, test)`` ratios: three non-negative numbers summing to 1, train and test > 0.

    A test split is required because evaluate scores on it; val may be empty.
    """
    values = tuple(float(r) for r in ratios)
    if (len(values) != 3 or min(values) < 0 or values[0] <= 0 or values[2] <= 0
            or not math.isclose(sum(values), 1.0, abs_tol=1e-6)):
        raise InvalidIngestOption(
            f"split ratios {list(ratios)} are invalid: give three non-negative numbers train,val,test that sum to 1, "
            "train and test above 0 (evaluate scores on the test split), e.g. 0.7,0.15,0.15"
        )
    return values  # type: ignore[return-value]


def check_limit(limit: int | None) -> None:
    """``--limit-per-class``: a positive number of images, or none (``None`` or 0, as on the command
    lines: every image)."""
    if limit is not None and limit < 0:
        raise InvalidIngestOption(f"--limit-per-class {limit} is invalid: give a positive number of images, "
                                  "or 0 for every image")


def check_folds(folds: int) -> None:
    """``--folds``: two or more cross-validation folds."""
    if folds < 2:
        raise InvalidIngestOption(f"folds {folds} is invalid: give 2 or more cross-validation folds")


def limit_per_class(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """Keep at most ``limit`` rows per class (per class and official split where there is one)."""
    if not limit:
        return frame
    check_limit(limit)
    ordered = frame.assign(_rank=rank(frame["id"], seed)).sort_values("_rank", kind="mergesort")
    kept = ordered.groupby(["class_name", "split"], sort=False).head(limit)
    return kept.drop(columns="_rank").sort_index()


def _class_then_rank(frame: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ordered by class name, then by seeded rank: ``(order, position in class, class size)``."""
    codes, _ = pd.factorize(frame["class_name"], sort=True)
    by_rank = np.argsort(rank(frame["id"], seed).to_numpy(), kind="stable")
    order = by_rank[np.argsort(codes[by_rank], kind="stable")]
    sizes = np.bincount(codes)
    starts = np.cumsum(sizes) - sizes
    ordered_codes = codes[order]
    return order, np.arange(len(order)) - starts[ordered_codes], sizes[ordered_codes]


def assign_splits(frame: pd.DataFrame, ratios: Sequence[float], seed: int) -> pd.Series:
    """Stratified train/val/test assignment: each class is cut by ``ratios`` in seeded order."""
    train, val, _ = check_ratios(ratios)
    order, position, size = _class_then_rank(frame, seed)
    # Every class keeps at least one training image; val and test take their rounded share after it.
    n_train = np.maximum(np.round(size * train), 1)
    n_val = np.minimum(np.round(size * val), size - n_train)
    split = np.empty(len(order), dtype=object)
    split[order] = np.where(position < n_train, "train", np.where(position < n_train + n_val, "val", "test"))
    return pd.Series(split, index=frame.index)


def assign_folds(frame: pd.DataFrame, folds: int, seed: int) -> pd.Series:
    """Stratified k-fold index for training rows (0..k-1), -1 for val and test rows."""
    check_folds(folds)
    is_train = (frame["split"] == "train").to_numpy()
    order, _, _ = _class_then_rank(frame[is_train], seed)
    # Dealt round-robin in class-then-rank order: every class spreads evenly over the folds and
    # fold sizes differ by at most one.
    fold = np.empty(len(order), dtype=np.int64)
    fold[order] = np.arange(len(order)) % folds
    result = np.full(len(frame), -1, dtype=np.int64)
    result[is_train] = fold
    return pd.Series(result, index=frame.index)
