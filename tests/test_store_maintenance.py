"""The library's own `verify` and `rm`: featurestore.verify_stores and featurestore.remove_store,
and the catalog's stale and writing columns they select on."""

import h5py
import numpy as np
import pytest
from store_fixtures import features_for, rows_for, spec_for, write_manifest_of, write_store

import featurestore
from featurestore.errors import StoreCorrupt, StoreLocked, StoreNotFound
from featurestore.store import StoreWriter, format as fmt
from featurestore.store.catalog import stale_models
from featurestore.store.paths import partial_path, store_path


def test_remove_store_refuses_while_a_writer_holds_the_lock(root):
    writer = StoreWriter.open(spec_for(model="a"), rows_for(30), root=root)
    writer.write(features_for(0, 8, 32))
    writer.commit()
    partial = partial_path(writer.path)
    with pytest.raises(StoreLocked, match="another process .* is writing this store"):
        featurestore.remove_store("toy", "a", root=root)
    assert partial.exists()
    writer.close()
    assert featurestore.remove_store("toy", "a", root=root) == [partial]  # interrupted now: removable
    assert not partial.exists()


def test_remove_store_with_partial_keeps_the_complete_store(root):
    final = write_store(root, n=30, model="a")
    with StoreWriter.open(spec_for(model="a", dim=16), rows_for(30), root=root, overwrite=True) as writer:
        writer.write(features_for(0, 8, 16))
        writer.commit()
    complete = final.read_bytes()
    assert featurestore.remove_store("toy", "a", root=root, partial=True) == [partial_path(final)]
    assert final.read_bytes() == complete
    with pytest.raises(StoreNotFound, match="no unfinished extraction for dataset 'toy' and model 'a'"):
        featurestore.remove_store("toy", "a", root=root, partial=True)
    assert final.exists()
    with StoreWriter.open(spec_for(model="a", dim=16), rows_for(30), root=root, overwrite=True) as writer:
        writer.write(features_for(0, 8, 16))
        writer.commit()
    assert featurestore.remove_store("toy", "a", root=root) == [final, partial_path(final)]  # both, without
    with pytest.raises(StoreNotFound, match="no store for dataset 'toy' and model 'a'"):
        featurestore.remove_store("toy", "a", root=root)


def test_remove_store_never_deletes_a_directory(root):
    final = write_store(root, n=30, model="a")
    partial_path(final).mkdir()
    with pytest.raises(StoreCorrupt, match="featurestore never deletes directories"):
        featurestore.remove_store("toy", "a", root=root)
    assert final.exists() and partial_path(final).is_dir()  # neither the store beside it
    directory = store_path("toy", "dir", root)
    directory.mkdir()
    with pytest.raises(StoreCorrupt, match="is a directory, not a store file"):
        featurestore.remove_store("toy", "dir", root=root)
    assert directory.is_dir()


def test_verify_stores_tells_ok_stale_failed_and_writing_apart(root):
    current = write_manifest_of(root, rows_for(30))
    write_store(root, n=30, model="good", manifest_hash=current)
    write_store(root, n=30, model="old")  # of another manifest than the current one
    nan = write_store(root, n=30, model="nan", manifest_hash=current)
    with h5py.File(nan, "r+") as file:
        file[fmt.MATRIX][4, 1] = np.nan
    with StoreWriter.open(spec_for(model="busy", manifest_hash=current), rows_for(30), root=root) as busy:
        busy.write(features_for(0, 8, 32))
        busy.commit()
        checks = {check.path.name.split(".")[0]: check for check in featurestore.verify_stores(root)}
    assert {model: (c.result, c.ok) for model, c in checks.items()} == {
        "busy": ("writing", None), "good": ("ok", True), "nan": ("failed", False), "old": ("stale", True)}
    assert checks["busy"].problems == [] and checks["busy"].warnings == [
        "being written now; verify it once its extraction ends"]
    assert checks["nan"].problems == ["1 row with NaN or inf (first: row 4)"]
    assert checks["old"].stale and "built from an earlier manifest of 'toy'" in checks["old"].warnings[0]
    assert [c.result for c in featurestore.verify_stores(root, "toy", "busy")] == ["failed"]  # its writer has gone
    with pytest.raises(StoreNotFound, match="no store matches dataset=toy model=nope"):
        featurestore.verify_stores(root, "toy", "nope")


def test_catalog_says_stale_and_writing_in_columns_beside_the_state_text(root):
    write_manifest_of(root, rows_for(30))  # the stores below were built from another manifest
    write_store(root, n=30, model="old")
    with StoreWriter.open(spec_for(model="busy"), rows_for(30), root=root) as busy:
        busy.write(features_for(0, 8, 32))
        busy.commit()
        table = featurestore.catalog(root).set_index("model")
    assert [tuple(table.loc[m, ["state", "stale", "writing"]]) for m in ("busy", "old")] == [
        ("stale, writing 8/30", True, True), ("stale", True, False)]
    table = featurestore.catalog(root).set_index("model")
    assert tuple(table.loc["busy", ["state", "stale", "writing"]]) == ("stale, interrupted 8/30", True, False)
    assert stale_models("toy", root) == ["busy", "old"]
