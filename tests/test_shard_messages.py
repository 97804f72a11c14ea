"""What merge-shards and the readers say about shards and merges, and that their commands run as printed.

Shard stores are written here by the real ``StoreWriter`` from the real plan (no model runs: a
merge copies rows), in a root whose path has spaces and a non-ASCII letter.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil

import h5py
import numpy as np
import pytest
from store_fixtures import features_for
from test_extract_support import write_photo_dataset
from typer.testing import CliRunner

import featurestore
from featurestore.cli import app
from featurestore.datasets.manifest import load_manifest
from featurestore.errors import InvalidOption, StoreConflict, StoreCorrupt, StoreIncomplete
from featurestore.extract import Shard, merge_shards, plan_jobs
from featurestore.store import StoreWriter, store_state, verify_file
from featurestore.store import format as fmt
from featurestore.store.paths import partial_path, store_path
from featurestore.store.reader import read_arrays

MODEL = "efficientnet_lite0"


@pytest.fixture
def spaced_root(tmp_path, root):
    """A root with the photos dataset (5 rows), other than ``root`` ($FEATURESTORE_HOME, which a command
    without --root uses), and whose path a shell splits unless it is quoted."""
    path = tmp_path / "root with spaces ü"
    write_photo_dataset(path, "photos", copies=1, size=48)
    return path


def job_of(root, shard: Shard = Shard(), layer: str | None = None):
    (job,) = plan_jobs(load_manifest("photos", root), "photos", [MODEL], root, shard=shard, layer=layer)
    return job


def write_shard(root, index: int, count: int, layer: str | None = None, extra: dict | None = None):
    """Shard ``index`` of ``count``, complete, rows computed as ``features_for`` their manifest row."""
    job = job_of(root, Shard(index, count), layer)
    start, _ = job.shard.bounds(len(load_manifest("photos", root).frame))
    with StoreWriter.open(job.spec, job.rows, job.root) as writer:
        writer.write(features_for(start, start + len(job.rows), job.spec.dim))
        return writer.finalize(extra)


def run(command: str):
    """Run a suggested `featurestore ...` command exactly as printed, as a shell would split it."""
    words = shlex.split(command)
    assert words[0] == "featurestore"
    return CliRunner().invoke(app, words[1:])


def test_a_damaged_shard_names_the_rm_that_deletes_it_and_not_the_merged_store(spaced_root):
    root = spaced_root
    # The advice was `featurestore rm photos efficientnet_lite0`, which deleted the merged store
    # (here perhaps the only intact copy of the shard's rows) and left the damaged shard.
    shards = [write_shard(root, i, 2) for i in range(2)]
    merge_shards("photos", [MODEL], 2, root)
    merged = store_path("photos", MODEL, root)
    with h5py.File(shards[1], "r+") as file:
        file.attrs[fmt.ATTR_PROVENANCE] = "{not json"
    (problem,) = verify_file(shards[1]).problems
    shard_root = shards[1].parents[2]
    assert problem.endswith(f"its provenance attribute is not readable JSON (Expecting property name enclosed in "
                            f"double quotes: line 1 column 2 (char 1)); delete it with `featurestore rm photos {MODEL} "
                            f"--root {shlex.quote(str(shard_root))}` and extract it again with --shard 1/2")
    removed = run(re.search(r"delete it with `([^`]+)`", problem).group(1))
    assert removed.exit_code == 0, removed.output
    assert not shards[1].exists() and merged.exists() and shards[0].exists()


def test_a_stale_merged_store_names_the_shard_extracts_and_the_merge_that_rebuild_it(spaced_root):
    root = spaced_root
    # It named `featurestore extract -d photos -m M --overwrite`, which computes every row on this host.
    for i in range(2):
        write_shard(root, i, 2)
    merge_shards("photos", [MODEL], 2, root)
    write_photo_dataset(root, "photos", copies=2, size=48)  # ingested again: the store and its shards are stale
    (problem,) = featurestore.catalog(root).query("model == @MODEL")["problem"]
    quoted = shlex.quote(str(root))
    assert problem == (
        f"built from an earlier manifest of 'photos' (ingested again since); rebuild its shards with "
        f"`featurestore extract -d photos -m {MODEL} --shard I/2 --overwrite --root {quoted}` for I = 0, 1 (each "
        f"where it ran), then merge them with `featurestore merge-shards -d photos -m {MODEL} --count 2 --root "
        f"{quoted} --overwrite`")
    shutil.rmtree(root / "shards")  # what the extracts' --overwrite replaces, without running a model here
    for i in range(2):
        write_shard(root, i, 2)
    merged = run(re.search(r"then merge them with `([^`]+)`", problem).group(1))
    assert merged.exit_code == 0, merged.output
    assert featurestore.catalog(root).query("model == @MODEL")["state"].tolist() == ["complete"]


def test_a_shard_of_another_layer_in_a_shards_place_is_told_where_it_belongs(spaced_root):
    root = spaced_root
    # It was told to move to stores/photos/efficientnet_lite0.logits.h5 (the whole store's place)
    # or to run `featurestore rm photos efficientnet_lite0` (which deletes the merged store).
    write_shard(root, 0, 2)
    logits = write_shard(root, 1, 2, layer="logits")
    avgpool = job_of(root, Shard(1, 2)).path
    avgpool.parent.mkdir(parents=True)
    shutil.copy(logits, avgpool)
    with pytest.raises(StoreCorrupt) as refused:  # damage, not a shard yet to be made: a flow run fails on it
        merge_shards("photos", [MODEL], 2, root)
    assert (f"holds the store of photos/{MODEL}.logits, not of photos/{MODEL} (copied or renamed there?); move it "
            f"to shards/photos/{MODEL}.logits/1-of-2/stores/photos/{MODEL}.logits.h5 or delete it with "
            f"`featurestore rm photos {MODEL} --root {shlex.quote(str(avgpool.parents[2]))}`") in str(refused.value)
    assert run(re.search(r"delete it with `([^`]+)`", str(refused.value)).group(1)).exit_code == 0
    assert not avgpool.exists() and logits.exists()


def test_merge_names_every_shard_that_keeps_it_from_running_and_why(spaced_root):
    root = spaced_root
    # It named the first bad shard only, each as "built from other inputs", and a wrong --count
    # as a missing shard without the shards there.
    shards = [write_shard(root, i, 3) for i in range(3)]
    shutil.copy(shards[0], shards[1])  # shard 0's store copied into shard 1's place
    shards[2].unlink()
    writing = job_of(root, Shard(2, 3))
    with StoreWriter.open(writing.spec, writing.rows, writing.root) as writer:  # a live writer of shard 2
        with pytest.raises(StoreIncomplete) as refused:
            merge_shards("photos", [MODEL], 3, root)
        message = str(refused.value)
        assert message.startswith(f"photos/{MODEL}: 2 of the 3 shards cannot be merged: ")
        assert (f"shard 1-of-3 ({shards[1]}) differs from this request (it holds shard 0-of-3, not shard 1-of-3): "
                f"run `featurestore extract -d photos -m {MODEL} --shard 1/3 --root {shlex.quote(str(root))} "
                f"--overwrite`") in message
        assert f"shard 2-of-3 ({shards[2]}) is being written by another process" in message
        writer.discard()
    with pytest.raises(StoreIncomplete) as refused:
        merge_shards("photos", [MODEL], 2, root)
    assert "shard 0-of-2" in str(refused.value) and "shard 1-of-2" in str(refused.value)
    assert str(refused.value).endswith("; shards of other counts are here (0-of-3, 1-of-3, 2-of-3): give --count as "
                                       "at extraction")


def test_a_merge_of_more_shards_than_rows_is_refused_up_front(spaced_root):
    root = spaced_root
    # extract --shard refuses more shards than rows; merge-shards said shard 0-of-99 was missing
    # and named `extract --shard 0/99`, which extract then refused.
    with pytest.raises(InvalidOption, match=r"^--count 99: photos has 5 rows, fewer than the 99 shards, so no "
                                            r"extraction made them; give the count used at extraction$"):
        merge_shards("photos", [MODEL], 99, root)


def test_a_shard_of_other_inputs_names_a_quoted_rm_of_the_shard(spaced_root):
    root = spaced_root
    # The shard's --root was printed unquoted: a root with spaces ran as several words.
    shard = write_shard(root, 1, 2)
    job = job_of(root, Shard(1, 2))
    with pytest.raises(StoreConflict) as conflict:
        store_state(dataclasses.replace(job.spec, weights_sha256="0" * 64), job.root)
    command = re.search(r"remove it with `([^`]+)`", str(conflict.value)).group(1)
    assert command == f"featurestore rm photos {MODEL} --root {shlex.quote(str(shard.parents[2]))}"
    assert run(command).exit_code == 0 and not shard.exists()


def test_an_interrupted_merge_is_resumed_by_the_merge_shards_command_it_names(spaced_root):
    root = spaced_root
    # Readers said "run extract again", which computed the merge's rows again on this host.
    shards = [write_shard(root, i, 2, extra={"library_versions": {"onnxruntime": "1.0-test"}}) for i in range(2)]
    intact = shards[1].read_bytes()
    with h5py.File(shards[1], "r+") as file:  # a real fault mid-merge: shard 1 lost its row flags
        del file[fmt.ROW_STATUS]
        file.create_dataset(fmt.ROW_STATUS, data=np.zeros(0, np.int8))
    with pytest.raises(featurestore.errors.FeatureStoreError, match="failed-row mask"):
        merge_shards("photos", [MODEL], 2, root)
    partial = partial_path(store_path("photos", MODEL, root))
    command = f"featurestore merge-shards -d photos -m {MODEL} --count 2 --root {shlex.quote(str(root))}"
    with pytest.raises(StoreIncomplete) as interrupted:
        featurestore.load("photos", MODEL, root=root)
    assert str(interrupted.value) == (f"{partial}: the merge of the shards of {MODEL} on photos was interrupted; "
                                      f"run `{command}` to resume it")
    assert verify_file(partial).problems == [f"merge of shards not finished (partial file); run `{command}` to "
                                             "resume it"]
    listed = featurestore.catalog(root).iloc[0]  # ls said "interrupted" with no advice
    assert listed["state"].startswith("interrupted ")
    assert listed["problem"] == f"an interrupted merge of shards; run `{command}` to resume it"
    shards[1].write_bytes(intact)
    resumed = run(command)
    assert resumed.exit_code == 0 and "resumed" in resumed.output, resumed.output
    provenance = featurestore.load_arrays("photos", MODEL, root=root).provenance
    assert [s["shard"] for s in provenance["extra"]["merged_from"]] == ["0-of-2", "1-of-2"]
    # What computed the rows is recorded as an extraction records it (the merge itself runs no model).
    assert provenance["extra"]["architecture"] == job_of(root).backbone.architecture
    assert provenance["library_versions"]["onnxruntime"] == "1.0-test"


def test_an_unfinished_merge_moved_to_the_stores_name_names_merge_shards_overwrite(spaced_root):
    root = spaced_root
    # Readers said "extract it again with --overwrite", which computes the merged rows on this host,
    # and without the --root the store lies under.
    shards = [write_shard(root, i, 2) for i in range(2)]
    intact = shards[1].read_bytes()
    with h5py.File(shards[1], "r+") as file:  # a real fault mid-merge, as above
        del file[fmt.ROW_STATUS]
        file.create_dataset(fmt.ROW_STATUS, data=np.zeros(0, np.int8))
    with pytest.raises(featurestore.errors.FeatureStoreError, match="failed-row mask"):
        merge_shards("photos", [MODEL], 2, root)
    final = store_path("photos", MODEL, root)
    partial_path(final).rename(final)
    command = f"featurestore merge-shards -d photos -m {MODEL} --count 2 --root {shlex.quote(str(root))} --overwrite"
    advice = f"though it has a finished store's name (a partial file moved there); replace it with `{command}`"
    with pytest.raises(StoreIncomplete) as unfinished:
        featurestore.load("photos", MODEL, root=root)
    assert str(unfinished.value).endswith(advice)
    listed = featurestore.catalog(root).iloc[0]
    assert listed["state"] == "unfinished" and listed["problem"].endswith(advice)
    shards[1].write_bytes(intact)
    replaced = run(command)
    assert replaced.exit_code == 0, replaced.output
    assert featurestore.catalog(root)["state"].tolist() == ["complete"] and verify_file(final).ok


def test_a_merge_over_a_store_of_other_inputs_names_merge_shards_overwrite(spaced_root):
    root = spaced_root
    # It said "extract it again with --overwrite", which computes every row on this host.
    job = job_of(root)
    other = dataclasses.replace(job.spec, weights_sha256="0" * 64)
    with StoreWriter.open(other, job.rows, root) as writer:
        writer.write(np.zeros((len(job.rows), other.dim), np.float32))
        writer.finalize()
    for i in range(2):
        write_shard(root, i, 2)
    with pytest.raises(StoreConflict) as conflict:
        merge_shards("photos", [MODEL], 2, root)
    command = f"featurestore merge-shards -d photos -m {MODEL} --count 2 --root {shlex.quote(str(root))} --overwrite"
    assert f"; merge again with `{command}` (overwrite=True) to replace it once the new one is complete" in str(
        conflict.value)
    assert "extract it again" not in str(conflict.value)
    assert str(conflict.value).endswith(f"or remove it with `featurestore rm photos {MODEL} --root "
                                        f"{shlex.quote(str(root))}`")
    merged = run(command)
    assert merged.exit_code == 0 and "merged" in merged.output, merged.output


def test_a_split_scattered_over_the_store_reads_the_same_rows_as_the_whole_store(tmp_path):
    # A split in many short runs was read with one HDF5 read per run (4.4 s for 1/3 of a 400 MB
    # store); it is now read in blocks. The rows must be the very same, over several blocks.
    from featurestore.store import RowTable, StoreSpec

    n, dim = 3000, 2048  # 24 MB: more than one 16 MiB block
    split = np.array(["train", "val", "test"])[np.random.default_rng(0).integers(0, 3, n)]
    rows = RowTable(ids=[f"img/{i:05d}" for i in range(n)], labels=np.arange(n) % 2, class_names=["a", "b"],
                    split=split, fold=np.full(n, -1))
    spec = StoreSpec(dataset="mixed", model="net", manifest_hash="m" * 64, weights_sha256="w" * 64, dim=dim)
    with StoreWriter.open(spec, rows, tmp_path) as writer:
        for start in range(0, n, 500):
            writer.write(features_for(start, start + 500, dim))
        path = writer.finalize()
    whole = read_arrays(path)
    for name in ("train", "val", "test"):
        part = read_arrays(path, name)
        assert np.array_equal(part.features, whole.features[split == name])
        assert np.array_equal(part.ids, whole.ids[split == name])
