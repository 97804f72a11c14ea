"""Readers for datasets whose labels and official split live in annotation files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from featurestore.datasets.errors import DatasetError
from featurestore.datasets.registry import Layout


def _lines(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file missing; the archive is incomplete — fetch it again")
    return [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _mat(path: Path) -> dict:
    try:
        return scipy.io.loadmat(path)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: not a readable .mat file ({error}); fetch it again") from None


def read_cub(directory: Path, paths: dict[str, Path]) -> Layout:
    """CUB-200-2011: images.txt, image_class_labels.txt, classes.txt and train_test_split.txt."""
    base = directory / "CUB_200_2011"
    images = dict(_lines(base / "images.txt"))
    labels = dict(_lines(base / "image_class_labels.txt"))
    is_train = dict(_lines(base / "train_test_split.txt"))
    # "001.Black_footed_Albatross" -> "Black_footed_Albatross": the number is the label, kept apart.
    class_by_id = {number: name.split(".", 1)[-1] for number, name in _lines(base / "classes.txt")}
    rows = [
        (rel, f"CUB_200_2011/images/{rel}", class_by_id[labels[key]], "train" if is_train[key] == "1" else "test")
        for key, rel in images.items()
    ]
    classes = tuple(class_by_id[k] for k in sorted(class_by_id, key=int))
    return Layout(frame=pd.DataFrame(rows, columns=["id", "source", "class_name", "split"]), classes=classes)


def flowers_reader(classes: Sequence[str]):
    """Oxford Flowers-102: jpg/image_NNNNN.jpg, labels in imagelabels.mat, split in setid.mat."""

    def read(directory: Path, paths: dict[str, Path]) -> Layout:
        labels = _mat(paths["imagelabels.mat"])["labels"].ravel()
        setid = _mat(paths["setid.mat"])
        split_of = {}
        for key, split in (("trnid", "train"), ("valid", "val"), ("tstid", "test")):
            split_of.update({int(i): split for i in setid[key].ravel()})
        rows = [
            (f"image_{i:05d}", f"jpg/image_{i:05d}.jpg", classes[int(label) - 1], split_of[i])
            for i, label in enumerate(labels, start=1) if i in split_of
        ]
        return Layout(frame=pd.DataFrame(rows, columns=["id", "source", "class_name", "split"]), classes=tuple(classes))

    return read


def _mat_strings(cells: np.ndarray) -> list[str]:
    return [str(np.asarray(cell).ravel()[0]) for cell in cells.ravel()]


def read_stanford_dogs(directory: Path, paths: dict[str, Path]) -> Layout:
    """Stanford Dogs: Images/<wnid>-<breed>/<file>.jpg; train_list.mat and test_list.mat from lists.tar."""
    frames = []
    for split in ("train", "test"):
        files = _mat_strings(_mat(directory / f"{split}_list.mat")["file_list"])
        frames.append(pd.DataFrame({"id": files, "split": split}))
    frame = pd.concat(frames, ignore_index=True)
    folders = frame["id"].str.split("/").str[0]
    # "n02085620-Chihuahua" -> "Chihuahua"; labels follow the sorted synset folders, as published.
    frame = frame.assign(source="Images/" + frame["id"], class_name=folders.str.split("-", n=1).str[1])
    classes = tuple(name.split("-", 1)[1] for name in sorted(folders.unique()))
    return Layout(frame=frame.loc[:, ["id", "source", "class_name", "split"]], classes=classes)


def read_oxford_pets(directory: Path, paths: dict[str, Path]) -> Layout:
    """Oxford-IIIT Pets: images/<Breed_name>_<n>.jpg; annotations/trainval.txt and test.txt."""
    rows, names = [], {}
    for split, listing in (("train", "trainval.txt"), ("test", "test.txt")):
        for image, class_id, *_ in _lines(directory / "annotations" / listing):
            # As torchvision names them: "american_bulldog" -> "American Bulldog".
            name = " ".join(part.title() for part in image.rsplit("_", 1)[0].split("_"))
            names[int(class_id)] = name
            rows.append((image, f"images/{image}.jpg", name, split))
    classes = tuple(names[k] for k in sorted(names))
    return Layout(frame=pd.DataFrame(rows, columns=["id", "source", "class_name", "split"]), classes=classes)
