"""Benchmark: verify-and-manifest throughput against a plain Pillow decoding loop, in the same run.

    .venv/bin/python benchmarks/ingest.py [--images 2400] [--workdir DIR]

Two datasets: the full Fashion-MNIST (70,000 images, from the Debian package files) and a folder
of real JPEGs cut from scikit-image's and scikit-learn's sample photos. For each, it times the
ingest steps after download (layout, verification, split, manifest) into a fresh root, and a
plain loop that decodes the same images with ``PIL.Image.open(...).convert("RGB")`` (for the
array dataset: the idx files read, then ``Image.fromarray(row).convert("RGB")`` per row). It
prints images/s and two ratios: wall-clock (includes the thread pool's parallelism) and CPU time
of this process (robust when other processes load the machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from featurestore.datasets.arrays import read_idx
from featurestore.ingest import pipeline


def _photos() -> list[np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    return [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(), *load_sample_images().images]


def make_jpeg_folder(base: Path, count: int, classes: int = 4) -> Path:
    """``count`` real JPEGs (crops of the sample photos, 200-512 px high) in ``classes`` class folders."""
    photos = _photos()
    rng = np.random.default_rng(0)
    for k in range(count):
        pixels = photos[k % len(photos)]
        height, width = pixels.shape[:2]
        # Native-resolution crops, 4:3, 200 px to the photo's full height: typical dataset sizes.
        crop_h = int(rng.integers(200, height + 1))
        crop_w = min(width, crop_h * 4 // 3)
        top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
        folder = base / f"class_{k % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[top:top + crop_h, left:left + crop_w]).save(folder / f"{k:05d}.jpg", quality=90)
    return base


def _timed(function) -> tuple[tuple[float, float], object]:
    """Run ``function``; return ((wall seconds, CPU seconds of this process), its value).

    CPU time is robust to other processes competing for the cores, wall time shows parallelism.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    value = function()
    return (time.perf_counter() - wall, time.process_time() - cpu), value


def _ingest_after_download(dataset: str, root: Path, files: dict[str, str], name: str | None = None):
    candidates = pipeline.prepare(dataset, files, root, name)
    verified = pipeline.verify(candidates)
    return pipeline.build_manifest(dataset, verified)


def bench_folder(work: Path, count: int, repeat: int) -> dict:
    folder = make_jpeg_folder(work / "jpegs", count)
    paths = sorted(str(p) for p in folder.rglob("*.jpg"))
    for path in paths:  # warm the page cache so both sides read from memory
        Path(path).read_bytes()
    ours, baseline = [], []
    for attempt in range(repeat):
        root = work / f"root-folder-{attempt}"
        files = pipeline.fetch_files("imagefolder", root, source=str(folder), progress=False)
        baseline.append(_timed(lambda: [Image.open(p).convert("RGB") for p in paths])[0])
        seconds, result = _timed(lambda: _ingest_after_download("imagefolder", root, files))
        ours.append(seconds)
    return {"name": f"folder of {len(paths)} JPEGs", "images": result.images, "ours": ours, "baseline": baseline}


def bench_fashion(work: Path, repeat: int) -> dict:
    ours, baseline = [], []
    for attempt in range(repeat):
        root = work / f"root-fashion-{attempt}"
        files = pipeline.fetch_files("fashion-mnist", root, progress=False)
        seconds, result = _timed(lambda: _ingest_after_download("fashion-mnist", root, files))
        ours.append(seconds)
        idx_files = [Path(files[name]) for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")]
        baseline.append(_timed(
            lambda: [Image.fromarray(row).convert("RGB") for path in idx_files for row in read_idx(path)])[0])
    return {"name": "Fashion-MNIST (70k, idx)", "images": result.images, "ours": ours, "baseline": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2400, help="JPEGs in the folder benchmark (>= 2000)")
    parser.add_argument("--workdir", help="Where to build the data (default: a temporary directory)")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each side, interleaved; the best counts")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fs-bench-ingest-"))
    try:
        rows = [bench_fashion(work, args.repeat), bench_folder(work, args.images, args.repeat)]
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"cpus: {os.cpu_count()}, load average after the run: {os.getloadavg()[0]:.2f}, best of {args.repeat}")
    print(f"{'dataset':28} {'images':>7} {'ours img/s':>11} {'PIL img/s':>10} {'wall ratio':>11} {'CPU ratio':>10}")
    for row in rows:
        # Best of the runs: on a shared machine the minimum is the least disturbed measurement.
        ours_wall = min(w for w, _ in row["ours"])
        base_wall = min(w for w, _ in row["baseline"])
        ours_cpu = min(c for _, c in row["ours"])
        base_cpu = min(c for _, c in row["baseline"])
        print(f"{row['name']:28} {row['images']:>7} {row['images'] / ours_wall:>11.0f} "
              f"{row['images'] / base_wall:>10.0f} {base_wall / ours_wall:>10.2f}x {base_cpu / ours_cpu:>9.2f}x")

if __name__ == "__main__":
    main()
