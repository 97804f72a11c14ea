"""The catalog while an extraction finishes: a .partial listed, then renamed to .h5 before it is read."""

import importlib
import os

import h5py
from store_fixtures import features_for, rows_for, spec_for

from featurestore.store import StoreWriter, catalog
from featurestore.store import format as fmt
from featurestore.store.lock import WriterLock
from featurestore.store.paths import lock_path, partial_path

# The module, not the function of the same name that featurestore.store exports.
catalog_module = importlib.import_module("featurestore.store.catalog")


def test_a_partial_renamed_into_place_while_the_catalog_runs_is_listed_as_the_store_it_became(root, monkeypatch):
    # Before: FileNotFoundError escaped catalog() (a traceback from `featurestore ls`).
    n, dim = 12, 8
    with StoreWriter.open(spec_for(dim=dim), rows_for(n), root=root) as writer:
        writer.write(features_for(0, n, dim))
        listed = catalog_module.store_files(root)  # taken while the extraction still runs
        final = writer.finalize()
    assert [p.name for p in listed] == [partial_path(final).name]
    monkeypatch.setattr(catalog_module, "store_files", lambda root=None: listed)
    frame = catalog(root)
    assert frame[["model", "state", "path"]].values.tolist() == [["net", "complete", str(final)]]


def test_a_store_removed_while_the_catalog_runs_is_left_out(root, monkeypatch):
    n, dim = 12, 8
    with StoreWriter.open(spec_for(dim=dim), rows_for(n), root=root) as writer:
        writer.write(features_for(0, n, dim))
        final = writer.finalize()
    listed = catalog_module.store_files(root)
    final.unlink()  # `featurestore rm` in another terminal
    monkeypatch.setattr(catalog_module, "store_files", lambda root=None: listed)
    assert catalog(root).empty


def _cut_short_partial(root, n=12, dim=8):
    """A partial file as a writer leaves it part-way through creating it: HDF5, but no store header yet."""
    with StoreWriter.open(spec_for(dim=dim), rows_for(n), root=root) as writer:
        writer.write(features_for(0, 4, dim))
        writer.commit()
    partial = partial_path(writer.path)
    with h5py.File(partial, "r+") as file:
        del file.attrs[fmt.ATTR_SCHEMA]  # the schema attribute comes with the header, after pandas' frames
    return partial, writer.path


def test_a_partial_read_while_its_writer_creates_it_is_writing_not_unreadable(root):
    # ls called it "unreadable" with "move it out of the store directory" while extract was starting
    # or finishing (the header is in flux then), and went on calling a partial cut short that way,
    # though extract discards such a partial by itself.
    partial, final = _cut_short_partial(root)
    lock = WriterLock(lock_path(final), final).acquire()  # the writer, still at work
    try:
        assert catalog(root)[["state", "problem"]].values.tolist() == [["writing", None]]
    finally:
        lock.release()
    [[state, problem]] = catalog(root)[["state", "problem"]].values.tolist()  # its writer killed
    assert state == "interrupted" and problem.endswith("the next `featurestore extract` of it starts it again")
    assert "move it out" not in problem and "featurestore rm" not in problem


def test_a_partial_moved_to_the_stores_name_is_unfinished_not_resumable(root):
    # ls said "interrupted 4/12" as for a partial extract resumes, but extract and load refuse it.
    partial, final = _cut_short_partial(root)
    with h5py.File(partial, "r+") as file:
        file.attrs[fmt.ATTR_SCHEMA] = fmt.SCHEMA_VERSION
    os.replace(partial, final)
    [[state, problem]] = catalog(root)[["state", "problem"]].values.tolist()
    assert state == "unfinished"
    assert problem.startswith("not marked complete (4 of 12 rows committed) though it has a finished store's name")
    assert problem.endswith("replace it with `featurestore extract -d toy -m net --overwrite`"), problem
