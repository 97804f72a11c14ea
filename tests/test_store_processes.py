"""Real processes: a writer killed with SIGKILL resumes to the same matrix; writers of different models run at once."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from store_fixtures import features_for, rows_for, spec_for, write_store

from featurestore.store import StoreWriter, catalog, load_arrays, verify_file
from featurestore.store.paths import partial_path, store_path

CHILD = Path(__file__).with_name("write_store_child.py")
FINALIZE_CHILD = Path(__file__).with_name("finalize_kill_child.py")


def start_writer(root, model, n, dim, delay):
    return subprocess.Popen([sys.executable, str(CHILD), str(root), model, str(n), str(dim), str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_write_then_resume_gives_identical_matrix(root, tmp_path):
    n, dim = 400, 64
    child = start_writer(root, "net", n, dim, delay=0.02)
    committed = 0
    for line in child.stdout:
        if line.startswith("committed"):
            committed = int(line.split()[1])
            if committed >= 96:
                break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    final = store_path("toy", "net", root)
    assert not final.exists() and partial_path(final).exists()

    resumed = start_writer(root, "net", n, dim, delay=0)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    start_line = out.splitlines()[0].split()
    assert start_line[0] == "start" and int(start_line[1]) >= committed

    uninterrupted_root = tmp_path / "uninterrupted"
    write_store(uninterrupted_root, n=n, dim=dim, model="net")
    resumed_arrays = load_arrays("toy", "net", root=root)
    reference = load_arrays("toy", "net", root=uninterrupted_root)
    np.testing.assert_array_equal(resumed_arrays.features, reference.features)
    np.testing.assert_array_equal(resumed_arrays.features, features_for(0, n, dim))
    assert verify_file(final).ok


def test_two_models_of_one_dataset_written_by_two_processes_at_once(root):
    writers = [start_writer(root, model, 240, 48, delay=0.01) for model in ("alpha", "beta")]
    results = [w.communicate(timeout=120) for w in writers]
    for writer, (out, err) in zip(writers, results):
        assert writer.returncode == 0, err
        assert "done" in out
    for model in ("alpha", "beta"):
        assert verify_file(store_path("toy", model, root)).ok
        np.testing.assert_array_equal(load_arrays("toy", model, root=root).features, features_for(0, 240, 48))


def test_second_writer_of_the_same_store_is_refused_with_one_line(root):
    # Slow enough to still be writing when the second process has started (a loaded machine took
    # more than 2.5 s to start it, and the first had finished its 400 rows by then); killed below.
    first = start_writer(root, "net", 400, 32, delay=1.0)
    assert first.stdout.readline().startswith("start")
    second = start_writer(root, "net", 400, 32, delay=0)
    _, err = second.communicate(timeout=60)
    first.kill()
    first.wait()
    assert second.returncode != 0
    assert "another process (pid" in err and "is writing this store" in err


def test_sigkill_inside_finalize_keeps_every_row_and_the_next_open_finishes_the_store(root, caplog):
    # A real SIGKILL (the child sends it to itself right after pandas removed /provenance in
    # finalize). Before: the next open called the partial unreadable, deleted it and started at row 0.
    n, dim = 40, 16
    child = subprocess.run([sys.executable, str(FINALIZE_CHILD), str(root), str(n), str(dim)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout.split() == ["committed", str(n)]
    final = store_path("toy", "net", root)
    assert not final.exists() and partial_path(final).exists()
    assert catalog(root)["state"].tolist() == [f"interrupted {n}/{n}"]  # not "unreadable": rm would lose it

    with StoreWriter.open(spec_for(dim=dim), rows_for(n), root=root) as writer:
        assert not writer.created and writer.committed_rows == n and writer.remaining == 0
        writer.finalize({"runtime": "test"})  # nothing recomputed: no row is written
    assert "completion was interrupted" in caplog.text and "discarding" not in caplog.text
    arrays = load_arrays("toy", "net", root=root)
    np.testing.assert_array_equal(arrays.features, features_for(0, n, dim))
    assert arrays.provenance["complete"] and arrays.provenance["extra"]["runtime"] == "test"
    assert verify_file(final).ok
