"""Store write/read throughput beside np.save/np.load of the same matrix, and peak RSS while writing.

    .venv/bin/python benchmarks/store_io.py [--rows 50000] [--dim 2048]

Targets (issue #2): store write >= 0.5x np.save, store read >= 0.5x np.load, peak RSS while
writing < 1 GB. Both sides read a file that was just written (warm page cache), on the same disk.
The store's writer fsyncs every commit (its rows survive a crash), so np.save followed by one
fsync is printed as a second, like-for-like baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from featurestore.store import RowTable, StoreSpec, StoreWriter, read_arrays

BATCH = 1024


def rows(n: int) -> RowTable:
    index = np.arange(n)
    return RowTable(ids=[f"{i:07d}" for i in index], labels=index % 10, class_names=[str(c) for c in range(10)],
                    split=np.where(index < 0.8 * n, "train", "test"), fold=np.full(n, -1))


def spec(dim: int) -> StoreSpec:
    return StoreSpec("bench", "net", "m" * 64, "w" * 64, {"size": 224}, dim)


def write_store(root: Path, table: RowTable, dim: int, chunk_of) -> Path:
    """Write a store with the default (durable: fsync at every commit) writer."""
    with StoreWriter.open(spec(dim), table, root=root) as writer:
        for start in range(0, len(table), BATCH):
            writer.write(chunk_of(start, min(start + BATCH, len(table))))
        return writer.finalize()


def rss_child(root: str, n: int, dim: int) -> None:
    """Write a store generating each chunk on the fly; print peak RSS in MB."""
    generator = np.random.default_rng(0)
    write_store(Path(root), rows(n), dim, lambda a, b: generator.standard_normal((b - a, dim), dtype=np.float32))
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, unlike ru_maxrss, is not inherited from the parent across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save_and_fsync(path: Path, matrix: np.ndarray) -> None:
    """np.save, then fsync: the same durability the store's writer gives its rows."""
    np.save(path, matrix)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]), int(args.rss_child[2]))
        return

    n, dim = args.rows, args.dim
    matrix = np.random.default_rng(0).standard_normal((n, dim), dtype=np.float32)
    megabytes = matrix.nbytes / 2**20
    table = rows(n)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as scratch:
        scratch = Path(scratch)
        npy = scratch / "matrix.npy"
        results = {"rows": n, "dim": dim, "megabytes": round(megabytes, 1)}
        results["np_save_s"] = timed(lambda: np.save(npy, matrix))
        results["np_save_fsync_s"] = timed(lambda: save_and_fsync(scratch / "synced.npy", matrix))
        results["np_load_s"] = timed(lambda: np.load(npy))
        path = scratch / "store"
        results["store_write_s"] = timed(lambda: write_store(path, table, dim, lambda a, b: matrix[a:b]))
        path = next(path.rglob("*.h5"))
        loaded = {}
        results["store_read_s"] = timed(lambda: loaded.setdefault("a", read_arrays(path)))
        assert np.array_equal(loaded["a"].features, matrix)
        child = subprocess.run([sys.executable, __file__, "--rss-child", str(scratch / "rss"), str(n), str(dim)],
                               capture_output=True, text=True, check=True)
        results.update(json.loads(child.stdout))

    def rate(seconds):
        return megabytes / seconds

    print(f"matrix: {n} x {dim} float32 = {megabytes:.0f} MB")
    print(f"np.save                 {rate(results['np_save_s']):8.0f} MB/s   (page cache only)")
    print(f"np.save + fsync         {rate(results['np_save_fsync_s']):8.0f} MB/s")
    seconds = results["store_write_s"]
    print(f"store write (fsync'd)   {rate(seconds):8.0f} MB/s   ratio vs np.save {results['np_save_s'] / seconds:.2f} "
          f"(target >= 0.5), vs np.save + fsync {results['np_save_fsync_s'] / seconds:.2f}")
    print(f"np.load                 {rate(results['np_load_s']):8.0f} MB/s")
    print(f"store read (full)       {rate(results['store_read_s']):8.0f} MB/s   ratio vs np.load {results['np_load_s'] / results['store_read_s']:.2f} (target >= 0.5)")
    print(f"peak RSS while writing  {results['peak_rss_mb']:8.0f} MB (target < 1024)")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    main()
