"""The ``device-decode`` reader: JPEG files decoded on the models' device (nvJPEG on a GPU).

The ``processes`` reader decodes with Pillow on every core; on the 16-core H100 host that peaked
at ~3,300 JPEGs/s, a quarter of resnet50's rate there (benchmarks/RESULTS.md). This reader moves
the decoding to the device: its threads only read file bytes, each batch's JPEGs are decoded in
one call (``torchvision.io.decode_jpeg`` on a list: one nvJPEG batch on CUDA), and every model's
runtime resizes and crops the decoded images on the device (``FeatureNet.forward_stored``).
Each image is still decoded once for all the backbones of the pass.

Rows nvJPEG is not given (files that are not JPEGs, JPEGs that are neither RGB nor greyscale,
e.g. CMYK, and rows of stored arrays) and JPEGs it refuses are decoded by Pillow as the other
readers do, then copied to the device; a row Pillow cannot decode either is recorded as failed.
On CPU the same code decodes with libjpeg-turbo, byte for byte what Pillow gives: that is how it
is tested without a GPU (it is no faster than ``threads`` there).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from featurestore.backbones import Preprocessing
from featurestore.datasets.errors import DatasetError
from featurestore.extract.reader import PreparedBatch, prefetched, record_failure

JPEG_MAGIC = b"\xff\xd8\xff"
#: manifest modes whose JPEGs nvJPEG turns into the colours Pillow gives (not CMYK or YCCK)
DEVICE_MODES = frozenset({"RGB", "L"})


def decode_jpegs(encoded: list, device: str) -> list:
    """Each encoded JPEG (1-D ``uint8`` CPU tensor) as ``uint8 (H, W, 3)`` on ``device``, None if it fails."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not encoded:
        return []
    try:
        decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        # A batch call returns nothing when one image fails: decode them one by one to find it.
        decoded = []
        for data in encoded:
            try:
                decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                decoded.append(None)
    return [None if image is None else image.permute(1, 2, 0) for image in decoded]


def decode_rows(manifest, begin: int, end: int, device: str) -> PreparedBatch:
    """Rows ``[begin, end)`` decoded on ``device``: ``stored`` holds one ``uint8 (H, W, 3)`` tensor per row."""
    import torch

    n = end - begin
    images: list = [None] * n
    failed = np.zeros(n, dtype=bool)
    modes = manifest.frame["mode"].to_numpy()
    jpegs: dict[int, torch.Tensor] = {}
    for j in range(n):
        data = _encoded_jpeg(manifest, begin + j) if modes[begin + j] in DEVICE_MODES else None
        if data is not None:
            jpegs[j] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    for j, image in zip(jpegs, decode_jpegs(list(jpegs.values()), device)):
        images[j] = image
    for j in range(n):
        if images[j] is not None:
            continue
        try:
            images[j] = torch.tensor(manifest.read_rgb(begin + j), device=device)
        except Exception as error:  # noqa: BLE001 - one bad image must not stop the pass
            record_failure(manifest, begin, j, failed, error)
            # Any pixels do: a failed row's features are zeroed by the store writer.
            images[j] = torch.zeros((1, 1, 3), dtype=torch.uint8, device=device)
    return PreparedBatch(begin, {}, failed, images)


def _encoded_jpeg(manifest, i: int) -> bytes | None:
    try:
        data = manifest.read_encoded(i)
    except (OSError, DatasetError):
        return None  # Pillow's turn: it fails the row with the error the other readers give
    return data if data is not None and data.startswith(JPEG_MAGIC) else None


def read_decoded_batches(manifest, preprocessings: Sequence[Preprocessing], start: int, stop: int,
                         batch_size: int, workers: int | None = None, *, device: str = "cpu") -> Iterator[PreparedBatch]:
    """Batches over rows ``[start, stop)`` decoded on ``device`` by ``workers`` threads (default 2),
    two batches ahead: decoded images are large, and on a GPU they hold device memory."""
    return prefetched(lambda begin, end: decode_rows(manifest, begin, end, device), start, stop, batch_size,
                      workers or 2, 2)
