"""Stores on a file system without file locks (Lustre without -o flock, many FUSE mounts, NFS
without a lock daemon): they read, and every writer is refused in one line.

Simulated as such a mount behaves: a shim preloaded into a child process makes ``flock()`` fail
with ENOSYS (or ENOLCK), for featurestore's lock files and for HDF5's own locking alike.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from store_fixtures import features_for, rows_for, spec_for, write_store
from test_extract_support import write_photo_dataset

from featurestore.store import StoreWriter, format as fmt
from featurestore.store.paths import lock_path

REPO = Path(__file__).resolve().parent.parent
SHIM = "#include <errno.h>\nint flock(int fd, int operation) {{ errno = {errno}; return -1; }}\n"
ADVICE = "use a --root on a local disk, or mount this one with locks on (Lustre: -o flock)"


def build_shim(directory: Path, errno_name: str) -> Path:
    """A shared library whose ``flock`` always fails with ``errno_name``, built with the system's C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc or gcc) to build the flock shim that simulates a file system without locks")
    source = directory / f"flock_{errno_name}.c"
    source.write_text(SHIM.format(errno=errno_name))
    library = directory / f"flock_{errno_name}.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True, capture_output=True)
    return library


@pytest.fixture(scope="module")
def enosys(tmp_path_factory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"), "ENOSYS")


@pytest.fixture(scope="module")
def enolck(tmp_path_factory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"), "ENOLCK")


def child(shim: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python *args`` with ``shim`` preloaded: a process on the lock-less file system."""
    environment = dict(os.environ, LD_PRELOAD=str(shim), PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}", **env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=environment,
                          cwd=REPO)


def cli(shim: Path, *args: str, root: Path, **env: str) -> subprocess.CompletedProcess:
    return child(shim, "-m", "featurestore.cli", *args, "--root", str(root), **env)


def leave_partial(root: Path, n: int = 20, done: int = 8) -> Path:
    """An interrupted extraction of model ``half``: ``done`` rows committed, and the lock file that a
    writer refused on the lock-less file system leaves beside it."""
    spec = spec_for(model="half")
    with StoreWriter.open(spec, rows_for(n), root=root) as writer:
        writer.write(features_for(0, done, spec.dim))
        writer.commit()
        final = writer.path
    lock_path(final).touch()
    return final


def assert_one_line_refusal(result: subprocess.CompletedProcess, where: Path, reason: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr == (f"error: {where}: this file system does not support file locks (flock: {reason}), "
                             f"which keep two processes from writing this store at once; {ADVICE}\n")


def test_stores_read_where_flock_is_not_implemented(root, enosys):
    store = write_store(root, n=20)
    leave_partial(root)
    with h5py.File(store, "r") as file:
        fingerprint = file.attrs[fmt.ATTR_FINGERPRINT]

    show = cli(enosys, "show", "toy", "net", "--json", root=root)
    assert show.returncode == 0, show.stderr
    assert fingerprint in show.stdout

    listed = cli(enosys, "ls", "--json", root=root)
    assert listed.returncode == 0, listed.stderr
    # Nobody can hold a lock here: the partial is interrupted, not being written.
    assert {entry["model"]: entry["state"] for entry in json.loads(listed.stdout)} == {
        "net": "complete", "half": "interrupted 8/20"}

    verified = cli(enosys, "verify", "toy", "net", "--json", root=root)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    code = f"""
import errno, h5py, featurestore
from featurestore.errors import StoreIncomplete
path = {str(store)!r}
try:  # the shim fails HDF5's own lock as it fails featurestore's
    h5py.File(path, "r", locking=True)
except OSError as error:
    assert error.errno == errno.ENOSYS, error
else:
    raise AssertionError("HDF5 locked the file through the shim")
frame = featurestore.load("toy", "net", root={str(root)!r})
arrays = featurestore.load_arrays("toy", "net", root={str(root)!r})
try:
    featurestore.load("toy", "half", root={str(root)!r})
except StoreIncomplete as error:
    print("half:", error)
print(frame.shape, arrays.features.sum())
"""
    loaded = child(enosys, "-c", code)
    assert loaded.returncode == 0, loaded.stderr
    expected = features_for(0, 20, 32).sum()
    half, shapes = loaded.stdout.splitlines()
    assert "was interrupted; run extract again to resume it" in half
    assert shapes.startswith("(20, ") and np.isclose(float(shapes.split(") ")[1]), expected, rtol=1e-5)


def test_every_writer_is_refused_in_one_line_where_flock_is_not_implemented(root, enosys):
    write_photo_dataset(root, "photos", copies=1)
    extract = cli(enosys, "extract", "-d", "photos", "-m", "efficientnet_lite0", "--no-progress", root=root)
    assert_one_line_refusal(extract, root / "stores" / "photos", "Function not implemented")
    assert not list((root / "stores" / "photos").glob("*.h5*.partial"))

    store = write_store(root, n=20)
    rm = cli(enosys, "rm", "toy", "net", root=root)
    assert_one_line_refusal(rm, store.parent, "Function not implemented")
    assert store.exists()

    code = f"""
from pathlib import Path
from featurestore.errors import FileLocksUnsupported
from featurestore.ingest.lock import ingesting
from featurestore.store.h5io import open_h5
from store_fixtures import write_store
for name, attempt in [("writer", lambda: write_store({str(root)!r}, n=20, model="other")),
                      ("ingest", lambda: ingesting(Path({str(root)!r}) / "datasets" / "new").__enter__()),
                      ("update", lambda: open_h5(Path({str(store)!r}), "r+"))]:
    try:
        attempt()
    except FileLocksUnsupported as error:
        print(name, error, sep=": ")
"""
    refused = child(enosys, "-c", code)
    assert refused.returncode == 0, refused.stderr
    writer, ingest, update = refused.stdout.splitlines()
    assert writer == (f"writer: {store.parent}: this file system does not support file locks (flock: Function not "
                      f"implemented), which keep two processes from writing this store at once; {ADVICE}")
    assert ingest.startswith(f"ingest: {root / 'datasets' / 'new'}: this file system does not support file locks")
    assert "from ingesting this dataset at once" in ingest
    # HDF5 refuses a writer's open on its own lock, and says so rather than "another process is writing".
    assert update.startswith(f"update: {store.parent}: this file system does not support file locks (flock: Function")
    assert not (root / "stores" / "toy" / "other.h5.partial").exists()


def test_no_locks_available_reads_through_h5py_and_names_the_setting_pandas_needs(root, enolck):
    write_store(root, n=20)
    listed = cli(enolck, "ls", "--json", root=root)
    assert listed.returncode == 0, listed.stderr
    assert [entry["state"] for entry in json.loads(listed.stdout)] == ["complete"]

    # HDF5 under pandas forgives ENOSYS but not ENOLCK, and pandas has no option to open unlocked.
    shown = cli(enolck, "show", "toy", "net", "--json", root=root)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    assert shown.stderr.count("\n") == 1 and "HDF5_USE_FILE_LOCKING=FALSE" in shown.stderr
    assert "featurestore rm" not in shown.stderr  # the store is sound: nothing to delete
    assert cli(enolck, "show", "toy", "net", "--json", root=root, HDF5_USE_FILE_LOCKING="FALSE").returncode == 0

    write_photo_dataset(root, "photos", copies=1)
    extract = cli(enolck, "extract", "-d", "photos", "-m", "efficientnet_lite0", "--no-progress", root=root)
    assert_one_line_refusal(extract, root / "stores" / "photos", "No locks available")
