"""Decode every candidate image once: record size, mode and content hash, or quarantine it.

Results are cached per file in ``.verified.csv`` inside the dataset directory, so a rerun decodes
nothing and a changed file is decoded again. The key holds the file's size and mtime, and its ctime
and inode too: a copy (``cp -p``, ``rsync -a``, ``tar x``) keeps the first two but never the last two.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from featurestore.datasets.errors import DatasetError
from featurestore.datasets.folders import from_text
from featurestore.files import written_aside

CACHE_FILE = ".verified.csv"
KEY = ("source", "size", "mtime_ns", "ctime_ns", "inode")
FIELDS = (*KEY, "width", "height", "mode", "sha256", "error")
# Below this many files a thread pool costs more to start than it saves.
_POOL_THRESHOLD = 256
# The stat key of a candidate gone since the scan: no file's stat gives -1.
_GONE = (-1, -1, -1, -1)


def inspect_file(path: str) -> tuple[int, int, str, str, str]:
    """Decode one file; return ``(width, height, mode, sha256, error)`` (error ``""`` if fine)."""
    if os.path.islink(path) and os.path.isdir(path):
        # The folder scan lists a linked sub-folder only when following it would walk images again.
        return 0, 0, "", "", (f"link to a folder already scanned ({os.readlink(path)}): a loop or a second way to "
                              "the same images, skipped")
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        if Path(path).is_symlink() and not Path(path).exists():
            return 0, 0, "", "", f"broken link (its target {os.readlink(path)} is missing)"
        if isinstance(error, FileNotFoundError):
            return 0, 0, "", "", _missing(path)
        return 0, 0, "", "", f"unreadable: {error.strerror or error}"
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return 0, 0, "", digest, "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                mode, (width, height) = image.mode, image.size
                if image.format == "JPEG":
                    # libjpeg's DCT scaling: every byte of the compressed stream is still entropy-
                    # decoded (so truncation and corrupt data are caught), but the inverse DCT runs
                    # at 1/8 scale. Extraction decodes at full size later anyway.
                    image.draft(mode, (1, 1))
                image.load()
    except UnidentifiedImageError:
        return 0, 0, "", digest, "not an image Pillow can identify"
    except Image.DecompressionBombError as error:
        return 0, 0, "", digest, f"too large to decode safely ({error})".replace("\n", " ")
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        return 0, 0, "", digest, f"truncated or corrupt ({error})".replace("\n", " ")
    if width < 1 or height < 1:
        return 0, 0, "", digest, f"degenerate size {width}x{height}"
    return width, height, mode, digest, ""


def _missing(path: str) -> str:
    """Why a candidate's file is not there: its name is not UTF-8 (the scan listed it as text, see
    ``as_text``), or the user removed it since the scan."""
    real = from_text(path)
    if real != path and os.path.lexists(real):
        return "file name is not valid UTF-8 (shown with \\xNN for the bytes that are not); rename it"
    return "removed while the ingest ran (it was there when the folder was scanned)"


def _stat_file(path: Path) -> tuple[int, int, int, int]:
    """Size, mtime, ctime and inode of ``path``; of the link itself when it is broken, and ``_GONE``
    when the user removed it since the scan: verification then says so, for each."""
    try:
        info = os.stat(path)
    except OSError:  # a broken link or a link loop: the link itself
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return _GONE
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino


def _stat(directory: Path, sources: Sequence[str]) -> pd.DataFrame:
    rows = [(source, *_stat_file(directory / source)) for source in sources]
    return pd.DataFrame(rows, columns=list(KEY)).astype({column: np.int64 for column in KEY[1:]})


def verify_files(directory: Path, sources: Sequence[str], *, workers: int | None = None) -> pd.DataFrame:
    """Verify the image files ``sources`` (relative to ``directory``).

    Returns one row per source with ``width``, ``height``, ``mode``, ``sha256`` and ``error``
    (the quarantine reason, ``""`` for a usable image). Only files not seen before, or changed
    since, are decoded; the rest come from the cache.
    """
    current = _stat(directory, sources)
    cache_path = directory / CACHE_FILE
    cached = _read_cache(cache_path)
    merged = current.merge(cached, on=list(KEY), how="left")
    todo = merged["width"].isna().to_numpy()
    if todo.any():
        paths = [str(directory / s) for s in merged.loc[todo, "source"]]
        results = _inspect_all(paths, workers)
        fresh = pd.DataFrame(results, columns=["width", "height", "mode", "sha256", "error"])
        for column in fresh.columns:
            merged.loc[todo, column] = fresh[column].to_numpy()
        merged = merged.astype({"width": np.int64, "height": np.int64})
        # Entries of files outside this run (e.g. beyond a per-class limit) stay cached too.
        others = cached[~cached["source"].isin(merged["source"])]
        _write_cache(cache_path, pd.concat([others, merged]) if len(others) else merged)
    return merged.astype({"width": np.int64, "height": np.int64}).loc[:, list(FIELDS)]


def _read_cache(path: Path) -> pd.DataFrame:
    """The cached rows. A cache written before a key column existed gets -1 there, which no file's
    stat gives: its files are decoded again, once."""
    if not path.is_file():
        return pd.DataFrame(columns=list(FIELDS))
    cached = pd.read_csv(path, dtype={"source": str, "mode": str, "sha256": str, "error": str}, keep_default_na=False)
    return cached.reindex(columns=list(FIELDS), fill_value=-1)


def _inspect_all(paths: list[str], workers: int | None) -> list[tuple[int, int, str, str, str]]:
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(paths) < _POOL_THRESHOLD:
        return [inspect_file(p) for p in paths]
    # Threads suffice: Pillow's decoders and hashlib release the GIL while they work.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(inspect_file, paths))


def _write_cache(path: Path, frame: pd.DataFrame) -> None:
    with written_aside(path) as partial:
        frame.loc[:, list(FIELDS)].to_csv(partial, index=False, lineterminator="\n")


def verify_array(array_path: Path, rows: np.ndarray | None = None) -> pd.DataFrame:
    """Verify rows ``rows`` (default all) of an array dataset stored as one ``.npy`` (``(N, H, W)``
    grey or ``(N, H, W, 3)`` RGB); the result is aligned with ``rows``.

    Every row is a decoded image already, so verification is its shape and its content hash.
    """
    pixels = np.load(array_path, mmap_mode="r")
    if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4) or (pixels.ndim == 4 and pixels.shape[3] != 3):
        raise DatasetError(
            f"{array_path}: array of {pixels.dtype} {pixels.shape} is not uint8 (N, H, W) or (N, H, W, 3); "
            "delete the dataset directory and ingest again"
        )
    count, height, width = pixels.shape[:3]
    rows = np.arange(count) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= count):
        raise DatasetError(f"{array_path}: holds {count} images, rows up to {int(rows.max())} were asked for; "
                           "delete the dataset directory and ingest again")
    # Slicing one contiguous buffer is far cheaper than indexing the memory map row by row.
    data = memoryview(np.ascontiguousarray(pixels).reshape(-1))
    step = data.nbytes // count if count else 0
    digests = [hashlib.sha256(data[i * step:(i + 1) * step]).hexdigest() for i in rows.tolist()]
    return pd.DataFrame({
        "width": np.full(len(rows), width, np.int64), "height": np.full(len(rows), height, np.int64),
        "mode": "RGB" if pixels.ndim == 4 else "L", "sha256": pd.Series(digests, dtype=object), "error": "",
    })
