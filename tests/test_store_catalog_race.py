"""The catalog while an extraction finishes: a .partial listed, then renamed to .h5 before it is read."""

import importlib

from store_fixtures import features_for, rows_for, spec_for

from featurestore.store import StoreWriter, catalog
from featurestore.store import format as fmt

# The module, not the function of the same name that featurestore.store exports.
catalog_module = importlib.import_module("featurestore.store.catalog")


def test_a_partial_renamed_into_place_while_the_catalog_runs_is_listed_as_the_store_it_became(root, monkeypatch):
    # Before: FileNotFoundError escaped catalog() (a traceback from `featurestore ls`).
    n, dim = 12, 8
    with StoreWriter.open(spec_for(dim=dim), rows_for(n), root=root) as writer:
        writer.write(features_for(0, n, dim))
        listed = catalog_module.store_files(root)  # taken while the extraction still runs
        final = writer.finalize()
    assert [p.name for p in listed] == [fmt.partial_path(final).name]
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
