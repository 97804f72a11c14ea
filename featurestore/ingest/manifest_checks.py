"""What ``build_manifest`` checks and derives from the verified rows before it writes a manifest:
that enough is readable to learn from, that the test split is not empty, which classes keep
images, and how many images have a byte-identical copy in another split or class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from featurestore.datasets.errors import DatasetError

# How many classes an error message lists by name.
_LISTED_CLASSES = 10


def labelled(usable: pd.DataFrame, listed: Sequence[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The rows with their ``label``, the classes that keep images, and the ``listed`` ones left empty.

    A class with no readable image cannot be learned or scored; keeping it would give the
    classifiers fewer classes than the labels name.
    """
    present = set(usable["class_name"])
    classes = [c for c in listed if c in present]
    empty = [c for c in listed if c not in present]
    labels = usable["class_name"].map({c: i for i, c in enumerate(classes)}).astype("int64")
    return usable.assign(label=labels).astype({"width": "int64", "height": "int64"}), classes, empty


def copies_across(usable: pd.DataFrame) -> int:
    """Images whose exact bytes (SHA-256) also sit in another split or under another class: a test
    image seen in training inflates accuracy, and one file under two labels teaches both wrong."""
    # Only images with a copy can spread; grouping just those keeps a 70k-row ingest from paying
    # for a group per image.
    copied = usable.loc[usable["sha256"].duplicated(keep=False), ["sha256", "split", "class_name"]]
    spread = copied.groupby("sha256")[["split", "class_name"]].nunique()
    spread = spread[(spread["split"] > 1) | (spread["class_name"] > 1)].index
    return int(copied["sha256"].isin(spread).sum())


def check_usable(reasons: Path, usable: pd.DataFrame) -> None:
    """Refuse a dataset with no readable image or a single class (``reasons`` lists the unreadable)."""
    directory = reasons.parent.parent
    if usable.empty:
        raise DatasetError(f"{directory}: no readable images (the reasons are in {reasons}); check the source files")
    if usable["class_name"].nunique() < 2:
        only = usable["class_name"].iat[0]
        raise DatasetError(
            f"{directory}: every readable image is in the single class {only!r}; a classifier needs two or more "
            "classes — add class folders"
        )


def check_test_split(directory: Path, usable: pd.DataFrame, ratios: Sequence[float]) -> None:
    """Refuse a seeded split that leaves the test split empty: evaluate scores on it.

    Every class keeps a training image first, so small classes (1 image, or 4 and 5 with the default
    ratios) can leave nothing for test even with a test ratio above 0.
    """
    if (usable["split"] == "test").any():
        return
    counts = usable["class_name"].value_counts().sort_index()
    listed = ", ".join(f"{name} {count}" for name, count in counts.head(_LISTED_CLASSES).items())
    if len(counts) > _LISTED_CLASSES:
        listed += f" and {len(counts) - _LISTED_CLASSES} more classes"
    if counts.max() < 2:
        fix = "add images: a class needs at least 2, one to train on and one to test"
    else:
        fix = "add images to each class, or give --ratios with a larger test share (e.g. 0.6,0.2,0.2)"
    shown = ",".join(f"{r:g}" for r in ratios)
    raise DatasetError(f"{directory}: the test split would be empty (images per class: {listed}; ratios {shown}), "
                       f"and evaluate scores on it; {fix}")
