"""Precision is how a store's rows were computed: recorded at creation, checked on resume, and
checked against a complete store only when the request names one (an explicit --precision)."""

import logging

import numpy as np
import pytest
from store_fixtures import features_for, rows_for, spec_for

from featurestore.errors import StoreConflict
from featurestore.store import StoreWriter, load_arrays, store_state
from featurestore.store.paths import store_path


def fill(spec, n, stop, *, overwrite=False):
    """Open the store for ``spec``, write rows up to ``stop`` and finalize if that is all of them."""
    with StoreWriter.open(spec, rows_for(n), overwrite=overwrite) as writer:
        start = writer.committed_rows
        if stop > start:
            writer.write(features_for(start, stop, spec.dim))
        if stop == n:
            writer.finalize({"precision": spec.precision})
        return writer, start


def test_a_partial_is_resumed_only_in_the_precision_it_was_started_in(root, caplog):
    n = 20
    fill(spec_for(precision="bf16"), n, 8)
    caplog.set_level(logging.WARNING)
    writer, start = fill(spec_for(precision="bf16"), n, 12)
    assert (writer.created, start) == (False, 8)
    assert "discarding" not in caplog.text

    writer, start = fill(spec_for(precision="fp32"), n, n)
    assert (writer.created, start) == (True, 0)  # every row computed again in fp32
    assert "(its rows were computed in bf16 and this pass computes in fp32); starting again" in caplog.text
    arrays = load_arrays("toy", "net")
    assert arrays.provenance["precision"] == "fp32"
    np.testing.assert_array_equal(arrays.features, features_for(0, n, 32))


def test_precision_is_not_part_of_the_fingerprint():
    # Existing stores keep their fingerprints: the field changes no fingerprint.
    assert spec_for(precision="bf16").fingerprint == spec_for().fingerprint == spec_for(precision="fp32").fingerprint


def test_only_an_explicit_precision_refuses_a_complete_store_of_another_and_overwrite_replaces_it(root):
    n = 12
    fill(spec_for(precision="bf16"), n, n)
    path = store_path("toy", "net", root)
    # No explicit precision (a CPU host defaulting to fp32): the bf16 store is the store.
    assert store_state(spec_for(precision="fp32")) == "complete"
    with StoreWriter.open(spec_for(precision="fp32"), rows_for(n)) as writer:
        assert writer.is_complete
    assert store_state(spec_for(precision="bf16", require_precision=True)) == "complete"

    explicit = spec_for(precision="fp32", require_precision=True)
    with pytest.raises(StoreConflict) as refused:
        store_state(explicit)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: store was computed in bf16, not in the requested fp32; extract it again "
                              "with --overwrite")
    with pytest.raises(StoreConflict):
        StoreWriter.open(explicit, rows_for(n))

    writer, start = fill(explicit, n, n, overwrite=True)
    assert writer.created and start == 0
    assert load_arrays("toy", "net").provenance["precision"] == "fp32"
    assert store_state(explicit) == "complete"
