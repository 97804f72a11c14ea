"""Pytest plugin for the dataset tests: real photos, archives in each dataset's real layout, and a
loopback HTTP server (127.0.0.1, a free port) that serves them with Range support and injected faults.

The photos are scikit-image's and scikit-learn's sample images, cropped and resized, so every
fixture image is a real JPEG of a real scene.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import socket
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import scipy.io
from PIL import Image


@cache
def _sources() -> tuple[np.ndarray, ...]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    return (skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(),
            *load_sample_images().images)


def photo(i: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """Real photo number ``i``: a crop of a sample image (chosen and placed by ``i``), resized."""
    sources = _sources()
    pixels = sources[i % len(sources)]
    height, width = pixels.shape[:2]
    side = min(height, width) // 2
    top = (i * 37) % (height - side)
    left = (i * 53) % (width - side)
    return Image.fromarray(pixels[top:top + side, left:left + side]).resize(size, Image.Resampling.BILINEAR)


def jpeg(i: int, size: tuple[int, int] = (48, 40)) -> bytes:
    """Photo ``i`` encoded as JPEG."""
    buffer = io.BytesIO()
    photo(i, size).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], compression: str = "gz") -> bytes:
    """A tar archive (``compression`` "gz" or "") holding ``members`` (directories implied)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}" if compression else "w") as bundle:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_600_000_000, 0o644
            bundle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive holding ``members``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in sorted(members.items()):
            bundle.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def mat_bytes(values: dict) -> bytes:
    """A MATLAB .mat file (as the published annotation files are)."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, values)
    return buffer.getvalue()


def cells(strings: list[str]) -> np.ndarray:
    """A MATLAB cell column of strings."""
    column = np.empty((len(strings), 1), dtype=object)
    for i, value in enumerate(strings):
        column[i, 0] = np.array([value])
    return column


@dataclass
class Fixture:
    """Files served for one dataset and what its ingest must produce."""

    files: dict[str, bytes]
    images: int
    classes: int
    splits: dict[str, int] | None = None
    quarantined: int = 0
    expected_split: dict[str, str] = field(default_factory=dict)

    def checksums(self) -> dict[str, str]:
        """Checksum overrides for the registry: the fixture files' SHA-256."""
        return {name: f"sha256:{hashlib.sha256(data).hexdigest()}" for name, data in self.files.items()}


def build_cifar10() -> Fixture:
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    members, counter = {}, 0

    def batch(n: int) -> bytes:
        nonlocal counter
        labels = [(counter + k) % 10 for k in range(n)]
        data = np.stack([np.asarray(photo(counter + k, (32, 32))).transpose(2, 0, 1).ravel() for k in range(n)])
        counter += n
        return pickle.dumps({"batch_label": "fixture", "labels": labels, "data": data.astype(np.uint8),
                             "filenames": [f"img_{k}.png" for k in range(n)]}, protocol=2)

    for i in range(1, 6):
        members[f"cifar-10-batches-py/data_batch_{i}"] = batch(4)
    members["cifar-10-batches-py/test_batch"] = batch(10)
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {"label_names": names, "num_cases_per_batch": 4, "num_vis": 3072}, protocol=2)
    return Fixture({"cifar-10-python.tar.gz": tar_bytes(members)}, images=30, classes=10,
                   splits={"train": 20, "test": 10})


def build_cub200() -> Fixture:
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    members, images, labels, split = {}, [], [], []
    for k in range(12):
        folder = classes[k % 3]
        rel = f"{folder}/{folder.split('.', 1)[1]}_{k:04d}_{k}.jpg"
        members[f"CUB_200_2011/images/{rel}"] = jpeg(k)
        images.append(f"{k + 1} {rel}")
        labels.append(f"{k + 1} {k % 3 + 1}")
        # Deliberately not a ratio any seeded split would produce: the official split must be kept.
        split.append(f"{k + 1} {1 if k in (0, 1, 2, 5, 7) else 0}")
    members["CUB_200_2011/images.txt"] = "\n".join(images).encode() + b"\n"
    members["CUB_200_2011/image_class_labels.txt"] = "\n".join(labels).encode() + b"\n"
    members["CUB_200_2011/train_test_split.txt"] = "\n".join(split).encode() + b"\n"
    members["CUB_200_2011/classes.txt"] = "\n".join(f"{i + 1} {c}" for i, c in enumerate(classes)).encode() + b"\n"
    expected = {line.split()[1]: ("train" if s.split()[1] == "1" else "test") for line, s in zip(images, split)}
    return Fixture({"CUB_200_2011.tgz": tar_bytes(members)}, images=12, classes=3,
                   splits={"train": 5, "test": 7}, expected_split=expected)


def build_flowers102() -> Fixture:
    n = 12
    members = {f"jpg/image_{i:05d}.jpg": jpeg(i) for i in range(1, n + 1)}
    labels = np.array([[i % 3 + 1 for i in range(n)]], dtype=np.float64)
    setid = {"trnid": np.array([[1, 2, 3, 4]]), "valid": np.array([[5, 6, 7, 8]]), "tstid": np.array([[9, 10, 11, 12]])}
    return Fixture({"102flowers.tgz": tar_bytes(members), "imagelabels.mat": mat_bytes({"labels": labels}),
                    "setid.mat": mat_bytes(setid)}, images=12, classes=3, splits={"train": 4, "val": 4, "test": 4})


def build_tf_flowers() -> Fixture:
    members = {f"flower_photos/{c}/{c}_{k}.jpg": jpeg(10 * j + k)
               for j, c in enumerate(["daisy", "dandelion", "roses", "sunflowers", "tulips"]) for k in range(6)}
    members["flower_photos/LICENSE.txt"] = b"All images in this archive are licensed under CC-BY 2.0.\n"
    return Fixture({"flower_photos.tgz": tar_bytes(members)}, images=30, classes=5)


def build_stanford_dogs() -> Fixture:
    folders = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog"]
    files = [f"{folders[k % 3]}/{folders[k % 3].split('-')[0]}_{k}.jpg" for k in range(12)]
    images = {f"Images/{f}": jpeg(k) for k, f in enumerate(files)}
    train, test = files[:6], files[6:]
    lists = {
        name: mat_bytes({"file_list": cells(part), "annotation_list": cells([p[:-4] for p in part]),
                         "labels": np.array([[folders.index(p.split("/")[0]) + 1] for p in part])})
        for name, part in (("train_list.mat", train), ("test_list.mat", test), ("file_list.mat", files))
    }
    return Fixture({"images.tar": tar_bytes(images, ""), "lists.tar": tar_bytes(lists, "")}, images=12, classes=3,
                   splits={"train": 6, "test": 6})


def build_oxford_pets() -> Fixture:
    breeds = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("Bengal", 1, 3)]
    images, trainval, test = {}, [], []
    for k in range(12):
        name, species, class_id = breeds[k % 3]
        image = f"{name}_{k + 1}"
        images[f"images/{image}.jpg"] = jpeg(k)
        (trainval if k < 6 else test).append(f"{image} {class_id} {species} {k + 1}")
    header = "#Image CLASS-ID SPECIES BREED ID\n"
    annotations = {"annotations/trainval.txt": ("\n".join(trainval) + "\n").encode(),
                   "annotations/test.txt": ("\n".join(test) + "\n").encode(),
                   "annotations/list.txt": (header + "\n".join(trainval + test) + "\n").encode()}
    return Fixture({"images.tar.gz": tar_bytes(images), "annotations.tar.gz": tar_bytes(annotations)},
                   images=12, classes=3, splits={"train": 6, "test": 6})


def build_cats_vs_dogs() -> Fixture:
    members = {f"PetImages/{c}/{k}.jpg": jpeg(20 * j + k) for j, c in enumerate(["Cat", "Dog"]) for k in range(8)}
    # The published archive's known faults: an empty file, a truncated JPEG, a non-image, Thumbs.db.
    members["PetImages/Cat/666.jpg"] = b""
    members["PetImages/Dog/11702.jpg"] = jpeg(99)[:400]
    members["PetImages/Dog/2317.jpg"] = b"<html>not a picture</html>"
    members["PetImages/Cat/Thumbs.db"] = b"\x00" * 64
    members["readme[1].txt"] = b"Kaggle cats and dogs\n"
    return Fixture({"kagglecatsanddogs_5340.zip": zip_bytes(members)}, images=16, classes=2, quarantined=3)


LAYOUTS: dict[str, Callable[[], Fixture]] = {
    "cifar10": build_cifar10,
    "cub200": build_cub200,
    "flowers102": build_flowers102,
    "tf-flowers": build_tf_flowers,
    "stanford-dogs": build_stanford_dogs,
    "oxford-pets": build_oxford_pets,
    "cats-vs-dogs": build_cats_vs_dogs,
}


class LoopbackServer:
    """HTTP server on 127.0.0.1 serving in-memory files, with Range support and injected faults."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.failures: dict[str, list[int]] = {}
        self.cuts: dict[str, int] = {}
        self.stalls: dict[str, float] = {}
        self.overstated: dict[str, int] = {}  # path -> bytes announced in Content-Length but never sent
        self.requests: list[tuple[str, str | None]] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path``; return its URL."""
        self.files[path] = data
        return self.url + path

    def fail(self, path: str, *statuses: int) -> None:
        """Answer the next requests for ``path`` with these statuses."""
        self.failures.setdefault(path, []).extend(statuses)

    def cut(self, path: str, after: int) -> None:
        """Drop the connection of the next request for ``path`` after ``after`` body bytes."""
        self.cuts[path] = after

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output readable
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                if server.failures.get(self.path):
                    self.send_error(server.failures[self.path].pop(0))
                    return
                if self.path in server.stalls:
                    time.sleep(server.stalls[self.path])
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                ranged = self.headers.get("Range")
                if ranged and ranged.startswith("bytes="):
                    start = int(ranged[6:].split("-")[0])
                    if start >= len(data):
                        # As real servers do: the Content-Range says how long the file really is.
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body) + server.overstated.get(self.path, 0)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                cut = server.cuts.pop(self.path, None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.close_connection = True

        return Handler

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def loopback():
    """A fresh loopback HTTP server for one test."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def serve_layout(loopback, monkeypatch):
    """Serve a dataset's fixture at ``<server>/<dataset>/<file>`` and point the mirror at it.

    Returns ``serve(name) -> Fixture``; the mirror is set through ``$FEATURESTORE_MIRROR``.
    """
    monkeypatch.setenv("FEATURESTORE_MIRROR", loopback.url)

    def serve(name: str) -> Fixture:
        fixture = LAYOUTS[name]()
        for filename, data in fixture.files.items():
            loopback.serve(f"/{name}/{filename}", data)
        return fixture

    return serve
