"""The store format: round trip of every field, pandas inspection, reuse rules, bad input."""

import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pandas as pd
import pytest
from store_fixtures import CLASSES, features_for, rows_for, spec_for, write_manifest_of, write_store

import featurestore
from featurestore.errors import (RootNotWritable, StoreConflict, StoreCorrupt, StoreIncomplete, StoreLocked,
                                 StoreNotFound, StoreSchemaTooNew)
from featurestore.store import RowTable, StoreWriter, format as fmt, load_arrays, store_path, store_state, verify_file
from featurestore.store.lock import WriterLock
from featurestore.store.paths import lock_path, partial_path
from featurestore.store.reader import read_arrays
from featurestore.store.spec import InvalidStoreInput


def test_round_trip_of_every_field(root):
    path = write_store(root, n=200, dim=32)
    arrays = load_arrays("toy", "net", root=root)
    rows = rows_for(200)
    np.testing.assert_array_equal(arrays.features, features_for(0, 200, 32))
    np.testing.assert_array_equal(arrays.ids, rows.ids)
    np.testing.assert_array_equal(arrays.labels, rows.labels)
    np.testing.assert_array_equal(arrays.split, rows.split)
    np.testing.assert_array_equal(arrays.fold, rows.fold)
    assert arrays.class_names == CLASSES
    assert not arrays.failed.any()
    p = arrays.provenance
    spec = spec_for()
    assert p["schema_version"] == fmt.SCHEMA_VERSION
    assert (p["dataset"], p["model"], p["manifest_hash"], p["weights_sha256"]) == ("toy", "net", "m" * 64, "w" * 64)
    assert p["preprocessing"] == spec.preprocessing and p["preprocessing"]["interpolation"] == "bicubic"
    assert p["fingerprint"] == spec.fingerprint == arrays.fingerprint
    assert p["rows"] == 200 and p["dim"] == 32 and p["dtype"] == "float32"
    assert p["complete"] is True and p["completed_at"] >= p["created_at"]
    assert {"numpy", "h5py", "hdf5", "pandas", "featurestore"} <= set(p["library_versions"])
    assert path == store_path("toy", "net", root)


def test_split_selection_reads_only_that_split(root):
    write_store(root, n=100)
    everything = load_arrays("toy", "net", root=root)
    for split in ("train", "val", "test"):
        part = load_arrays("toy", "net", split=split, root=root)
        mask = everything.split == split
        np.testing.assert_array_equal(part.features, everything.features[mask])
        np.testing.assert_array_equal(part.ids, everything.ids[mask])
        assert set(part.split) == {split}


def test_float16_store(root):
    write_store(root, n=50, dtype="float16")
    arrays = load_arrays("toy", "net", root=root)
    assert arrays.features.dtype == np.float16
    np.testing.assert_allclose(arrays.features, features_for(0, 50, 32), rtol=1e-3, atol=1e-3)


def test_load_returns_dataframe_with_features_and_row_columns(root):
    write_store(root, n=60)
    frame = featurestore.load("toy", "net", split="test", root=root)
    assert list(frame.columns[:2]) == ["f0000", "f0001"]
    assert list(frame.columns[-6:]) == ["id", "label", "class_name", "split", "fold", "failed"]
    assert (frame["split"] == "test").all()
    assert frame["class_name"].tolist() == [CLASSES[label] for label in frame["label"]]


def test_pandas_reads_the_store_without_featurestore(root):
    path = write_store(root, n=120, dim=16)
    with pd.HDFStore(path, mode="r") as store:
        assert sorted(store.keys()) == ["/features", "/provenance", "/rows"]
    features = pd.read_hdf(path, "features")
    assert features.shape == (120, 16) and features.index.name == "id"
    np.testing.assert_array_equal(features.to_numpy(), features_for(0, 120, 16))
    rows = pd.read_hdf(path, "rows")
    assert rows.index.tolist() == features.index.tolist()
    assert list(rows.columns) == ["label", "class_name", "split", "fold"]
    assert len(pd.read_hdf(path, "rows", where="split == 'val'")) == (rows["split"] == "val").sum()
    provenance = pd.read_hdf(path, "provenance")
    assert json.loads(provenance.loc["model", "value"]) == "net"


def test_matrix_is_stored_once(root):
    path = write_store(root, n=2000, dim=1024, batch=256)
    matrix_bytes = 2000 * 1024 * 4
    assert path.stat().st_size < 1.1 * matrix_bytes


def test_complete_store_with_same_fingerprint_is_reused_untouched(root):
    path = write_store(root, n=40)
    before = path.read_bytes()
    with StoreWriter.open(spec_for(), rows_for(40), root=root) as writer:
        assert writer.is_complete and writer.remaining == 0
        assert writer.finalize() == path
    assert path.read_bytes() == before
    assert store_state(spec_for(), root) == "complete"


def test_store_with_other_fingerprint_is_never_mixed(root):
    path = write_store(root, n=40)
    before = path.read_bytes()
    other = spec_for(weights_sha256="x" * 64)
    # The message names what differs: here only the weights (a wrong --weights file reads as such).
    with pytest.raises(StoreConflict, match=r"built from other inputs than requested \(weights: sha256 wwwwwwwwwwww "
                                            r"stored, xxxxxxxxxxxx requested \(check --weights\)\); extract it again"):
        StoreWriter.open(other, rows_for(40), root=root)
    with pytest.raises(StoreConflict):
        store_state(other, root)
    assert path.read_bytes() == before


def test_overwrite_replaces_only_when_new_store_is_complete(root):
    path = write_store(root, n=40)
    other = spec_for(weights_sha256="x" * 64)
    with StoreWriter.open(other, rows_for(40), root=root, overwrite=True) as writer:
        writer.write(features_for(0, 20, 32))
        assert load_arrays("toy", "net", root=root).fingerprint == spec_for().fingerprint
        writer.write(features_for(20, 40, 32) * 2)
        writer.finalize()
    assert load_arrays("toy", "net", root=root).fingerprint == other.fingerprint
    assert path.exists() and not partial_path(path).exists()


def test_failed_rows_are_flagged_and_zeroed(root):
    spec = spec_for()
    with StoreWriter.open(spec, rows_for(16), root=root) as writer:
        failed = np.zeros(16, dtype=bool)
        failed[[3, 7]] = True
        writer.write(features_for(0, 16, 32), failed=failed)
        writer.finalize()
    arrays = load_arrays("toy", "net", root=root)
    assert arrays.failed.tolist() == failed.tolist()
    assert not arrays.features[3].any() and arrays.provenance["failed_rows"] == 2
    # Before: load() gave these rows as zero features with nothing saying they failed.
    frame = featurestore.load("toy", "net", root=root)
    assert frame["failed"].tolist() == failed.tolist() and frame["failed"].dtype == bool
    (warning,) = verify_file(arrays.path).warnings
    assert warning.endswith("2 rows failed to decode at extraction (stored as zeros, flagged failed): "
                            "img/000003.jpg, img/000007.jpg; if their images read now, `featurestore extract -d toy "
                            "-m net --overwrite` extracts the store again")


def test_missing_store_says_how_to_make_it(root):
    write_manifest_of(root, rows_for(10))
    with pytest.raises(StoreNotFound, match="featurestore extract --dataset toy --models net"):
        load_arrays("toy", "net", root=root)
    write_store(root, n=10, model="net")
    with pytest.raises(StoreNotFound, match=r"no store for dataset 'toy' and model 'nte' \(stores of 'toy': net\); "
                                            r"check the names, or run .* if 'nte' is a backbone"):
        load_arrays("toy", "nte", root=root)  # a typo reads as one, not as a store to extract


@pytest.mark.parametrize("dataset, ingest", [
    ("nosuch", "featurestore ingest imagefolder --source DIR|ARCHIVE|URL --name nosuch"),
    ("fashion-mnist", "featurestore ingest fashion-mnist"),
])
def test_a_store_of_a_dataset_never_ingested_says_to_ingest_it(root, dataset, ingest):
    # Before: "run `featurestore extract --dataset nosuch ...`", which only refuses a dataset without a manifest.
    write_manifest_of(root, rows_for(10))
    with pytest.raises(StoreNotFound) as caught:
        load_arrays(dataset, "net", root=root)
    assert str(caught.value) == (
        f"{store_path(dataset, 'net', root)}: no store for dataset {dataset!r} and model 'net' (stores of {dataset!r}: "
        f"none); dataset {dataset!r} is not ingested (ingested here: toy); check the names, or run `{ingest}` first")


def test_interrupted_and_locked_stores_are_reported(root):
    writer = StoreWriter.open(spec_for(), rows_for(40), root=root)
    writer.write(features_for(0, 16, 32))
    with pytest.raises(StoreLocked, match="still writing"):
        load_arrays("toy", "net", root=root)
    with pytest.raises(StoreLocked, match="another process"):
        StoreWriter.open(spec_for(), rows_for(40), root=root)
    writer.close()
    with pytest.raises(StoreIncomplete, match="interrupted; run extract again"):
        load_arrays("toy", "net", root=root)
    with StoreWriter.open(spec_for(), rows_for(40), root=root) as resumed:
        assert resumed.committed_rows == 16


def test_no_lock_file_outlives_its_writer_and_a_waiting_writer_locks_the_new_one(root):
    final = write_store(root, n=30)
    assert sorted(p.name for p in final.parent.iterdir()) == ["net.h5"]  # no net.h5.lock left beside it
    first = WriterLock(lock_path(final), final).acquire()
    waiting = ThreadPoolExecutor(1).submit(WriterLock(lock_path(final), final).acquire, 10)
    time.sleep(0.3)  # the second writer is now blocked on the first one's lock file
    first.release()  # removes that file
    second = waiting.result(timeout=10)
    # The second writer holds the lock file that exists now, so a third is excluded.
    with pytest.raises(StoreLocked, match=f"another process \\(pid {os.getpid()}\\) is writing"):
        WriterLock(lock_path(final), final).acquire(wait_seconds=0)
    second.release()
    assert not lock_path(final).exists()


@pytest.mark.parametrize("damage, error, message", [
    (lambda p: p.write_bytes(b"this is a CSV, not HDF5\n"), StoreCorrupt, "not an HDF5 file"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), StoreCorrupt, "truncated"),
])
def test_damaged_file_gives_one_line_and_is_left_alone(root, damage, error, message):
    path = write_store(root, n=64)
    damage(path)
    before = path.read_bytes()
    with pytest.raises(error, match=message) as caught:
        load_arrays("toy", "net", root=root)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    with pytest.raises(error):
        StoreWriter.open(spec_for(), rows_for(64), root=root)
    assert path.read_bytes() == before


def test_newer_schema_is_refused(root):
    path = write_store(root, n=20)
    with h5py.File(path, "r+") as file:
        file.attrs[fmt.ATTR_SCHEMA] = fmt.SCHEMA_VERSION + 1
    with pytest.raises(StoreSchemaTooNew, match="upgrade featurestore"):
        load_arrays("toy", "net", root=root)


def test_row_table_rejects_bad_rows():
    with pytest.raises(InvalidStoreInput, match="appears more than once"):
        RowTable(ids=["a", "a"], labels=[0, 1], class_names=["x", "y"], split=["train", "test"], fold=[0, -1])
    with pytest.raises(InvalidStoreInput, match="unknown split"):
        RowTable(ids=["a", "b"], labels=[0, 1], class_names=["x", "y"], split=["train", "holdout"], fold=[0, -1])
    with pytest.raises(InvalidStoreInput, match="labels must lie in 0..1"):
        RowTable(ids=["a", "b"], labels=[0, 2], class_names=["x", "y"], split=["train", "test"], fold=[0, -1])


def test_writer_rejects_wrong_shapes(root):
    with StoreWriter.open(spec_for(), rows_for(10), root=root) as writer:
        with pytest.raises(InvalidStoreInput, match=r"shape \(k, 32\)"):
            writer.write(np.zeros((2, 31), dtype=np.float32))
        with pytest.raises(InvalidStoreInput, match="only 10 remain"):
            writer.write(np.zeros((11, 32), dtype=np.float32))
        # Before: a mask too long but all False was accepted (one too short raised numpy's IndexError).
        for mask in (np.zeros(3, dtype=bool), np.zeros(1, dtype=bool)):
            with pytest.raises(InvalidStoreInput) as refused:
                writer.write(np.zeros((2, 32), dtype=np.float32), mask)
            assert str(refused.value).endswith(f"the failed-row mask has shape {mask.shape} for 2 rows of features; "
                                               "give one flag per row, shape (2,)")
        assert writer.position == 0


def test_catalog_lists_complete_and_partial_stores(root):
    write_store(root, n=30, model="a")
    writer = StoreWriter.open(spec_for(model="b"), rows_for(30), root=root)
    writer.write(features_for(0, 8, 32))
    writer.commit()
    table = featurestore.catalog(root).set_index("model")
    assert table.loc["a", "complete"] and table.loc["a", "rows"] == 30 and table.loc["a", "dim"] == 32
    assert table.loc["a", "fingerprint"] == spec_for(model="a").fingerprint
    assert table.loc["b", "state"] == "writing 8/30" and not table.loc["b", "complete"]
    writer.close()
    assert featurestore.catalog(root).set_index("model").loc["b", "state"] == "interrupted 8/30"


def test_discard_if_unused_drops_only_a_fresh_empty_partial(root):
    # A pass that fails before its first batch deletes the partial it created, so the catalog
    # shows no "interrupted 0/N" store; a partial holding rows (or resumed) is always kept.
    spec, rows = spec_for(dim=8), rows_for(40)
    partial = partial_path(store_path("toy", "net", root))
    StoreWriter.open(spec, rows, root).discard_if_unused()
    assert not partial.exists() and featurestore.catalog(root=root).empty
    with StoreWriter.open(spec, rows, root) as writer:
        writer.write(features_for(0, 16, 8))
        writer.commit()
    resumed = StoreWriter.open(spec, rows, root)
    assert (resumed.created, resumed.committed_rows) == (False, 16)
    resumed.discard_if_unused()
    (state,) = featurestore.catalog(root=root)["state"]
    assert state == "interrupted 16/40"
    written = StoreWriter.open(spec_for(dim=8, model="other"), rows, root)
    written.write(features_for(0, 4, 8))
    written.discard_if_unused()
    assert featurestore.catalog(root=root)["state"].tolist() == ["interrupted 16/40", "interrupted 4/40"]


@pytest.mark.parametrize("cut_before", [fmt.ATTR_FINGERPRINT, fmt.ATTR_PROVENANCE])
def test_a_partial_cut_short_while_being_created_is_started_again_not_resumed(root, cut_before):
    # Ctrl-C reaches a process-pool worker anywhere, also while a fresh partial gets its last
    # attributes: such a file lacks the fingerprint (written last) or, before the fix, the provenance.
    spec, rows = spec_for(dim=8), rows_for(20)
    StoreWriter.open(spec, rows, root).close()
    partial = partial_path(store_path("toy", "net", root))
    with h5py.File(partial, "r+") as file:
        del file.attrs[cut_before]
    with StoreWriter.open(spec, rows, root) as writer:
        assert writer.created
        writer.write(features_for(0, 20, 8))
        writer.finalize({})
    np.testing.assert_array_equal(load_arrays("toy", "net", root=root).features, features_for(0, 20, 8))


def test_store_arrays_print_as_a_summary_not_every_number(root):
    write_store(root, n=30, dim=8)
    arrays = load_arrays("toy", "net", root=root)
    assert repr(arrays) == "StoreArrays(net.h5: features 30 x 8 float32, 3 classes, 0 failed rows)"


def test_catalog_keeps_whole_numbers_beside_an_unreadable_store(root):
    write_store(root, n=30, dim=8)
    store_path("toy", "broken", root).write_bytes(b"not an HDF5 file")
    frame = featurestore.catalog(root=root).set_index("model")
    assert frame.loc["broken", "state"] == "unreadable" and pd.isna(frame.loc["broken", "rows"])
    assert (frame.loc["net", "rows"], frame.loc["net", "dim"]) == (30, 8)
    assert str(frame["rows"].dtype) == "Int64"


def test_verify_and_resume_read_non_ascii_ids_as_utf8(root):
    # Before: verify and resuming a partial decoded the ids as ASCII (UnicodeDecodeError).
    ids = ["chat/é.jpg", "blume/flöwer.webp", "x/0.jpg", "x/1.jpg"]
    rows = RowTable(ids=ids, labels=[0, 1, 0, 1], class_names=["chat", "blume"],
                    split=["train", "train", "test", "test"], fold=[0, 1, -1, -1])
    writer = StoreWriter.open(spec_for(), rows, root=root)
    writer.write(features_for(0, 2, 32))
    writer.commit()
    writer.close()
    with StoreWriter.open(spec_for(), rows, root=root) as resumed:
        assert resumed.committed_rows == 2
        resumed.write(features_for(2, 4, 32))
        path = resumed.finalize()
    report = verify_file(path)
    assert report.ok, report.problems
    assert load_arrays("toy", "net", root=root).ids.tolist() == ids


def flip_metadata_bytes(path):
    """Invert bytes among the HDF5 object headers, as a failing disk would: the file still opens."""
    with open(path, "r+b") as file:
        for offset in range(800, 4000, 97):
            file.seek(offset)
            byte = file.read(1)[0]
            file.seek(offset)
            file.write(bytes([byte ^ 0xFF]))


def garble_provenance_attribute(path):
    with h5py.File(path, "r+") as file:
        file.attrs[fmt.ATTR_PROVENANCE] = "not json{"


@pytest.mark.parametrize("damage, message", [
    (flip_metadata_bytes, "its HDF5 internals are damaged"),
    (garble_provenance_attribute, "its provenance attribute is not readable JSON"),
])
def test_damaged_internals_give_store_corrupt_everywhere_and_are_left_alone(root, damage, message):
    # Before: raw KeyError / JSONDecodeError from every reader, and the catalog failed as a whole.
    write_store(root, n=64, model="good")
    path = write_store(root, n=64, model="net")
    damage(path)
    before = path.read_bytes()
    expected = f"{path}: {message} (.*); delete it with `featurestore rm toy net` and extract again$"
    table = featurestore.catalog(root).set_index("model")
    assert table.loc["good", "state"] == "complete" and table.loc["net", "state"] == "unreadable"
    assert re.match(expected, table.loc["net", "problem"])
    report = verify_file(path)
    assert not report.ok and re.match(expected, report.problems[0])
    for read in (lambda: load_arrays("toy", "net", root=root), lambda: featurestore.load("toy", "net", root=root),
                 lambda: store_state(spec_for(), root), lambda: StoreWriter.open(spec_for(), rows_for(64), root=root)):
        with pytest.raises(StoreCorrupt, match=expected) as caught:
            read()
        assert "\n" not in str(caught.value)
    assert path.read_bytes() == before


def overwrite_provenance_table(path):
    """30 bytes of /provenance's table data become 0xFF: HDF5 is intact, pandas cannot decode it."""
    with h5py.File(path, "r") as file:
        offset = file["provenance/table"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as file:
        file.seek(offset + 10)
        file.write(b"\xff" * 30)


def delete_rows(path):
    with h5py.File(path, "r+") as file:
        del file[fmt.ROWS_KEY]


@pytest.mark.parametrize("damage, problem, listed", [
    # The catalog reads headers and attributes only, so it cannot see garbled table bytes; verify reads them.
    (overwrite_provenance_table, "pandas cannot read /provenance", "complete"),
    (delete_rows, "store lacks /rows", "unreadable"),
])
def test_verify_and_catalog_catch_a_pandas_key_that_does_not_read(root, damage, problem, listed):
    # Before: verify passed a store whose /provenance pandas cannot read, and ls called a store
    # without /rows complete.
    path = write_store(root, n=40)
    damage(path)
    report = verify_file(path)
    assert not report.ok and problem in report.problems[0]
    assert featurestore.catalog(root)["state"].tolist() == [listed]


def test_an_unfinished_store_under_the_final_name_is_replaced_only_with_overwrite(root):
    # A .partial renamed to the store's name by hand was "complete" to extract (skipped, even with
    # --overwrite) while every reader said "run extract again to finish it".
    with StoreWriter.open(spec_for(), rows_for(40), root=root, commit_bytes=1 << 10) as writer:
        writer.write(features_for(0, 16, 32))
    final = store_path("toy", "net", root)
    partial_path(final).rename(final)
    unfinished = "store is not marked complete (16 of 40 rows committed) though it has a finished store's name"
    with pytest.raises(StoreConflict, match=re.escape(f"{unfinished} (a partial file moved there); extract it again "
                                                      "with --overwrite")):
        store_state(spec_for(), root)
    # Every reader says it in the same words, with the command that replaces it on this root.
    with pytest.raises(StoreIncomplete, match=re.escape(
            f"{unfinished} (a partial file moved there); replace it with `featurestore extract -d toy -m net "
            "--overwrite`")):
        load_arrays("toy", "net", root=root)
    with StoreWriter.open(spec_for(), rows_for(40), root=root, overwrite=True) as writer:
        assert not writer.is_complete and writer.committed_rows == 0
        writer.write(features_for(0, 40, 32))
        assert writer.finalize() == final
    assert store_state(spec_for(), root) == "complete"
    assert np.array_equal(load_arrays("toy", "net", root=root).features, features_for(0, 40, 32))


def test_a_store_at_another_stores_path_is_unreadable_there(root, tmp_path):
    # Copied or renamed to another (dataset, model), a store was listed complete, passed verify and
    # was evaluated as that model: one backbone's features reported under another's name.
    path = write_store(root, n=20)
    for dataset, model in (("toy", "other"), ("elsewhere", "net")):
        (root / "stores" / dataset).mkdir(exist_ok=True)
        shutil.copy(path, store_path(dataset, model, root))
        with pytest.raises(StoreCorrupt, match=rf"holds the store of toy/net, not of {dataset}/{model} \(copied or "
                                               rf"renamed there\?\); move it to stores/toy/net.h5 or delete it with "
                                               rf"`featurestore rm {dataset} {model}`"):
            load_arrays(dataset, model, root=root)
        with pytest.raises(StoreCorrupt, match="holds the store of toy/net"):
            store_state(spec_for(dataset=dataset, model=model), root)
        assert not verify_file(store_path(dataset, model, root)).ok
    states = {(r["dataset"], r["model"]): r["state"] for r in featurestore.catalog(root).to_dict("records")}
    assert states == {("toy", "net"): "complete", ("toy", "other"): "unreadable", ("elsewhere", "net"): "unreadable"}
    kept = shutil.copy(path, tmp_path / "my-copy.h5")  # outside a root's stores/, a store is read by its path
    assert read_arrays(kept).features.shape == (20, 32)


@pytest.mark.parametrize("damaged", ["rows", "rows/table", "provenance/table"])
def test_a_store_with_a_damaged_object_header_is_unreadable_to_ls_extract_and_verify(root, damaged):
    # Its /rows header overwritten, the store was listed complete and reused by extract: only
    # verify and evaluate, which read /rows, found the damage. The header of an object in a pandas
    # key (/rows/table) overwritten, it still was, though every reader and verify refused it.
    path = write_store(root, n=20)
    with h5py.File(path, "r") as file:
        header = h5py.h5o.get_info(file[damaged].id).addr
    with open(path, "r+b") as raw:
        raw.seek(header)
        raw.write(b"GARBAGE!" * 4)
    expected = "its HDF5 internals are damaged .*; delete it with `featurestore rm toy net` and extract again$"
    (entry,) = featurestore.catalog(root).to_dict("records")
    assert entry["state"] == "unreadable" and re.search(expected, entry["problem"])
    with pytest.raises(StoreCorrupt, match=expected):
        store_state(spec_for(), root)
    with pytest.raises(StoreCorrupt, match=expected):
        load_arrays("toy", "net", root=root)
    report = verify_file(path)
    assert not report.ok and re.search(expected, report.problems[0])
    with pytest.raises(StoreCorrupt):
        StoreWriter.open(spec_for(), rows_for(20), root=root, overwrite=True)
    assert not partial_path(path).exists()


def test_a_file_where_the_stores_directory_belongs_is_named(root):
    (root / "stores").mkdir(parents=True)
    (root / "stores" / "toy").write_text("not a directory")
    with pytest.raises(RootNotWritable, match=r"stores/toy is a file where featurestore keeps a directory; move it away"):
        StoreWriter.open(spec_for(), rows_for(20), root=root)
    (root / "stores" / "toy").unlink()
    (root / "stores").rmdir()
    (root / "stores").write_text("not a directory")
    with pytest.raises(RootNotWritable, match=r"/stores is a file where featurestore keeps a directory"):
        StoreWriter.open(spec_for(), rows_for(20), root=root)
