"""A store renamed into place while it is read (extract --overwrite, featurestore run finishing)
must never pair one store's features with another store's rows."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest
from store_fixtures import CLASSES, features_for, rows_for, spec_for, write_store

from featurestore.errors import FeatureStoreError
from featurestore.evaluation.data import read_store_rows
from featurestore.store import RowTable, StoreWriter, load_arrays, verify_file
from featurestore.store.paths import store_path

N, DIM = 30, 8


def write_other_store(root):
    """A store with the same ids as ``write_store``'s but other labels, other features and a failed row."""
    rows = rows_for(N)
    relabelled = RowTable(ids=rows.ids, labels=(rows.labels + 1) % 3, class_names=CLASSES, split=rows.split,
                          fold=rows.fold)
    spec = spec_for(dim=DIM, manifest_hash="n" * 64)
    with StoreWriter.open(spec, relabelled, root=root) as writer:
        failed = np.zeros(N, dtype=bool)
        failed[4] = True
        writer.write(features_for(0, N, DIM) + 100, failed)
        return writer.finalize()


@pytest.fixture
def replace_at_pandas_read(root, tmp_path, monkeypatch):
    """Rename the other store over the store the moment pandas opens it by path, ``times`` times."""
    path = write_store(root, n=N, dim=DIM)
    other = write_other_store(tmp_path / "other")
    read_hdf = pd.read_hdf
    calls = {"left": 0}

    def read_hdf_after_a_replace(source, *args, **kwargs):
        if calls["left"] > 0:
            calls["left"] -= 1
            shutil.copyfile(other, path.with_name("incoming"))
            os.replace(path.with_name("incoming"), path)  # as StoreWriter.finalize does
        return read_hdf(source, *args, **kwargs)

    monkeypatch.setattr(pd, "read_hdf", read_hdf_after_a_replace)

    def arm(times):
        calls["left"] = times
    return arm


def test_a_store_replaced_between_the_two_opens_is_read_again_whole(replace_at_pandas_read):
    # Before: the old store's features came back with the new store's labels, no error.
    replace_at_pandas_read(1)
    arrays = load_arrays("toy", "net")
    assert arrays.provenance["manifest_hash"] == "n" * 64
    np.testing.assert_array_equal(arrays.labels, (rows_for(N).labels + 1) % 3)
    np.testing.assert_array_equal(arrays.features[~arrays.failed], (features_for(0, N, DIM) + 100)[~arrays.failed])
    assert np.flatnonzero(arrays.failed).tolist() == [4]


def test_a_store_replaced_at_every_read_raises_one_line(replace_at_pandas_read):
    replace_at_pandas_read(2)
    with pytest.raises(FeatureStoreError) as replaced:
        load_arrays("toy", "net")
    message = str(replaced.value)
    assert "\n" not in message and "was replaced while it was being read" in message and "read it again" in message


def test_evaluation_reads_the_rows_and_failed_flags_of_one_store(replace_at_pandas_read):
    replace_at_pandas_read(1)
    table = read_store_rows("toy", "net")
    np.testing.assert_array_equal(table.labels, (rows_for(N).labels + 1) % 3)
    assert np.flatnonzero(table.failed).tolist() == [4]


def test_verify_says_a_store_was_replaced_while_it_was_verified(replace_at_pandas_read, root):
    replace_at_pandas_read(1)
    report = verify_file(store_path("toy", "net", root))
    assert not report.ok and "was replaced while it was being read" in report.problems[0]
