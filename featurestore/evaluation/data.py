"""Reading stores for evaluation: one read per store, checks on classes and row agreement.

Stores keep rows in manifest order (train, val, test), so the parts a classifier needs are
usually contiguous and are handed out as views, not copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

import featurestore
from featurestore.errors import InvalidOption
from featurestore.evaluation.errors import ClassMissingFromTrain, NoTestRows, SingleClassDataset, StoresDisagree
from featurestore.ingest.split import limit_per_class
from featurestore.store import locate
from featurestore.store.format import ROW_STATUS, STATUS_FAILED
from featurestore.store.reader import read_consistently

FIT_SPLITS = ("train", "val")


@dataclass
class EvalData:
    """Features and rows of one store, or of several stores side by side, without failed rows."""

    dataset: str
    models: list[str]
    X: np.ndarray
    y: np.ndarray
    split: np.ndarray
    fold: np.ndarray
    ids: np.ndarray
    class_names: list[str]
    #: column range of each model's features in ``X``
    blocks: dict[str, tuple[int, int]]
    fingerprints: dict[str, str]
    n_failed: int
    #: hyper-parameters are chosen by CV within the train+val rows instead of on val: set where
    #: ``train_per_class`` drew the fit rows from train and val together, so that selection sees
    #: only the rows the final model is fitted on
    select_within_fit: bool = False
    #: the per-class cap the fit rows were drawn with, ``None`` for a full fit: also where
    #: ``train_per_class`` was asked for but no class had more usable train+val rows than that
    train_per_class: int | None = None

    def rows(self, *splits: str) -> slice | np.ndarray:
        """Row selector for ``splits``: a slice when those rows are contiguous, else indices."""
        index = np.flatnonzero(np.isin(self.split, splits))
        if len(index) and index[-1] - index[0] + 1 == len(index):
            return slice(int(index[0]), int(index[-1]) + 1)
        return index

    def part(self, *splits: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of the rows in ``splits``."""
        selector = self.rows(*splits)
        return self.X[selector], self.y[selector]

    def n_rows(self, *splits: str) -> int:
        """Number of rows in ``splits``."""
        return int(np.isin(self.split, splits).sum())

    def selection_rows(self) -> tuple[slice | np.ndarray, slice | np.ndarray]:
        """Row selectors of hyper-parameter selection: ``(rows candidates are fitted on, rows they are
        scored on)``. The second is empty where selection is by CV (or subsample) within the first:
        without a val split, or with ``select_within_fit``."""
        if self.select_within_fit:
            return self.rows(*FIT_SPLITS), self.rows()
        return self.rows("train"), self.rows("val")


def _read(dataset: str, model: str, root) -> tuple:
    arrays = featurestore.load_arrays(dataset, model, root=root)
    features = np.asarray(arrays.features)
    if features.dtype != np.float32:
        features = features.astype(np.float32)
    failed = np.zeros(len(arrays.ids), bool) if arrays.failed is None else np.asarray(arrays.failed, bool)
    return arrays, features, failed


#: stores are compared only to combine them (stacking, early fusion)
STORES_DISAGREE_HINT = ("extract both from the same manifest to combine them, or evaluate each on its own "
                        "with --no-stacking (or one with -m MODEL)")


def _check_same_rows(dataset: str, first_model: str, first, model: str, other) -> None:
    """Raise ``StoresDisagree`` naming the first field on which two stores' rows differ."""
    where = f"stores {dataset}/{first_model} and {dataset}/{model}"
    if len(first.ids) != len(other.ids):
        raise StoresDisagree(
            f"{where} hold {len(first.ids)} and {len(other.ids)} rows; {STORES_DISAGREE_HINT}"
        )
    for field in ("ids", "labels", "split", "fold"):
        left, right = np.asarray(getattr(first, field)), np.asarray(getattr(other, field))
        differ = np.flatnonzero(left != right)
        if len(differ):
            row = int(differ[0])
            raise StoresDisagree(
                f"{where} disagree on {field} at row {row} (id {first.ids[row]!r}: "
                f"{left[row]!r} vs {right[row]!r}, {len(differ)} rows differ); {STORES_DISAGREE_HINT}"
            )
    if list(first.class_names) != list(other.class_names):
        raise StoresDisagree(
            f"{where} disagree on class names ({list(first.class_names)} vs {list(other.class_names)}); {STORES_DISAGREE_HINT}"
        )


@dataclass(frozen=True)
class StoreRows:
    """The row table of one store, without its feature matrix."""

    ids: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    fold: np.ndarray
    class_names: list[str]
    #: rows that failed at extraction
    failed: np.ndarray


def read_store_rows(dataset: str, model: str, root=None) -> StoreRows:
    """Read only the rows table, the failed-row flags and class names of the (dataset, model) store."""
    path = locate(dataset, model, root)
    # The header first: PyTables, reading /rows of a store whose HDF5 metadata is damaged, can
    # crash the process, where the header check gives StoreCorrupt.
    classes, failed, rows = read_consistently(path, lambda file, provenance, rows: (
        [str(c) for c in provenance["classes"]], file[ROW_STATUS][:] == STATUS_FAILED, rows))
    return StoreRows(
        ids=rows.index.to_numpy(dtype=str),
        labels=rows["label"].to_numpy(dtype=np.int64),
        split=rows["split"].to_numpy(dtype=str),
        fold=rows["fold"].to_numpy(dtype=np.int64),
        class_names=classes,
        failed=failed,
    )


def check_rows(dataset: str, models: Sequence[str], root=None) -> None:
    """Raise before any fitting if the stores of ``models`` disagree on their rows, or if the
    dataset's rows cannot be evaluated (see ``check_test_rows``, ``check_classes``), counting
    only the rows no store failed. Reads no feature matrix."""
    tables = [read_store_rows(dataset, model, root) for model in models]
    for model, table in zip(models[1:], tables[1:]):
        _check_same_rows(dataset, models[0], tables[0], model, table)
    if tables:
        failed = np.logical_or.reduce([table.failed for table in tables])
        check_test_rows(dataset, tables[0], failed)
        keep = ~failed
        check_classes(dataset, tables[0].labels[keep], tables[0].split[keep], tables[0].class_names)


#: ids of failed test images a message names; the rest are counted
SHOW_FAILED_IDS = 3


def check_test_rows(dataset: str, rows: StoreRows, failed: np.ndarray) -> None:
    """Raise ``NoTestRows`` if no test row of ``rows`` (a store's row table, or its arrays) is left
    once the ``failed`` rows are dropped, saying which is the case: every test image failed at
    extraction, or the split gave no class a test image (classes too small for the ratios)."""
    test = rows.split == "test"
    if np.any(test & ~failed):
        return
    if test.any():
        ids = [str(i) for i in rows.ids[test]]
        named = ", ".join(ids[:SHOW_FAILED_IDS]) + (", ..." if len(ids) > SHOW_FAILED_IDS else "")
        raise NoTestRows(
            f"dataset {dataset!r} has no usable test rows: all {len(ids)} test images failed to decode at "
            f"extraction ({named}); fix or replace those images, then ingest and extract again"
        )
    counts = np.bincount(rows.labels, minlength=len(rows.class_names))
    sizes = ", ".join(f"{name} {n}" for name, n in zip(rows.class_names, counts))
    raise NoTestRows(
        f"dataset {dataset!r} has no test rows: its classes are too small for the ingest ratios to give any of "
        f"them a test image (images per class: {sizes}); add images, or raise the test share "
        "(e.g. --ratios 0.6,0.2,0.2), then ingest and extract again"
    )


def check_classes(dataset: str, y: np.ndarray, split: np.ndarray, class_names: Sequence[str]) -> None:
    """Raise if train holds fewer than two classes or misses a class that val or test holds."""
    train_classes = set(np.unique(y[split == "train"]).tolist())
    if len(train_classes) < 2:
        raise SingleClassDataset(
            f"dataset {dataset!r}: train holds {len(train_classes)} class(es) "
            f"({', '.join(class_names[c] for c in sorted(train_classes)) or 'none'}); "
            "a classifier needs at least two, so ingest a dataset with more classes"
        )
    missing = sorted(set(np.unique(y).tolist()) - train_classes)
    if missing:
        names = ", ".join(repr(class_names[c]) for c in missing)
        raise ClassMissingFromTrain(
            f"dataset {dataset!r}: class(es) {names} have val/test rows but no train rows; "
            "re-split the dataset so every class has train images"
        )


def check_train_per_class(per_class: int | None) -> None:
    """Raise ``InvalidOption`` unless ``per_class`` is ``None`` or 0 (every train row, as ingest's
    ``--limit-per-class 0`` is every image) or positive."""
    if per_class is not None and per_class < 0:
        raise InvalidOption(f"--train-per-class {per_class} is invalid: give a positive number of train images "
                            "per class, or 0 (or leave it out) to fit on all of them")


def train_subset(ids: np.ndarray, y: np.ndarray, split: np.ndarray, per_class: int, seed: int,
                 usable: np.ndarray | None = None) -> np.ndarray:
    """Mask keeping at most ``per_class`` train+val rows of each class, chosen by ``seed`` among the
    ``usable`` ones (default: all), and every test row: a learning-curve point on the same test set,
    from the same stores, whose final model is fitted on at most ``per_class`` rows per class.

    Train and val are drawn from together because the final model is refitted on both; keeping
    every val row would add the whole val split to each point of the curve.
    """
    check_train_per_class(per_class)
    fit = np.isin(split, FIT_SPLITS)
    if usable is not None:
        # failed rows are dropped anyway: drawing among them would leave their class short
        fit &= usable
    candidates = np.flatnonzero(fit)
    # The same seeded choice ingest's --limit-per-class makes (a rank of the ids), so a smaller N
    # keeps a subset of a larger N's rows; one group per class over train and val.
    rows = pd.DataFrame({"id": ids[candidates], "class_name": y[candidates], "split": "fit"}, index=candidates)
    keep = ~np.isin(split, FIT_SPLITS)
    keep[limit_per_class(rows, per_class, seed).index.to_numpy()] = True
    return keep


def kept_rows(ids: np.ndarray, labels: np.ndarray, split: np.ndarray, failed: np.ndarray,
              train_per_class: int | None, seed: int) -> np.ndarray:
    """Mask of the rows evaluation uses: none that ``failed`` (in any store), and with
    ``train_per_class`` at most that many train+val rows per class (see ``train_subset``)."""
    keep = ~failed
    if train_per_class is not None:
        keep &= train_subset(ids, labels, split, train_per_class, seed, usable=keep)
    return keep


def load_eval_data(dataset: str, models: Iterable[str], root=None, train_per_class: int | None = None,
                   seed: int = 0) -> EvalData:
    """Read each model's store of ``dataset`` once and put the features side by side.

    The stores must hold the same rows (ids, labels, split, folds, class names); rows that
    failed in any store are dropped from all of them. ``train_per_class`` keeps at most that
    many usable train+val rows per class (chosen by ``seed``; see ``train_subset``) and every
    test row; hyper-parameters are then selected within the kept train+val rows
    (``select_within_fit``). A ``train_per_class`` that leaves out no usable row (every class has
    at most that many) is a full fit, selection included: the data says ``train_per_class=None``.
    """
    models = list(models)
    read = [_read(dataset, model, root) for model in models]
    first = read[0][0]
    for model, (arrays, _, _) in zip(models[1:], read[1:]):
        _check_same_rows(dataset, models[0], first, model, arrays)
    ids = np.asarray(first.ids).astype(str)
    labels = np.asarray(first.labels, np.int64)
    split = np.asarray(first.split).astype(str)
    failed = np.logical_or.reduce([f for _, _, f in read])
    check_test_rows(dataset, first, failed)
    # Checked before the draw: a class whose N drawn rows all come from val still has train rows.
    check_classes(dataset, labels[~failed], split[~failed], [str(c) for c in first.class_names])
    keep = kept_rows(ids, labels, split, failed, train_per_class, seed)
    # Test rows are always kept, so a usable row left out is a train+val row the cap dropped.
    capped = train_per_class if bool(np.any(~keep & ~failed)) else None
    blocks, start = {}, 0
    for model, (_, features, _) in zip(models, read):
        blocks[model] = (start, start + features.shape[1])
        start += features.shape[1]
    if len(read) == 1 and keep.all():
        X = read[0][1]
    else:
        X = np.concatenate([features[keep] for _, features, _ in read], axis=1)
    fingerprints = {model: str(arrays.fingerprint) for model, (arrays, _, _) in zip(models, read)}
    del read
    data = EvalData(
        dataset=dataset,
        models=models,
        X=X,
        y=labels[keep],
        split=split[keep],
        fold=np.asarray(first.fold, np.int64)[keep],
        ids=ids[keep],
        class_names=[str(c) for c in first.class_names],
        blocks=blocks,
        fingerprints=fingerprints,
        n_failed=int(failed.sum()),
        select_within_fit=capped is not None,
        train_per_class=capped,
    )
    return data
