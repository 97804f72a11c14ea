"""The dataset registry, the `featurestore datasets | ingest` commands and the Prefect `ingest` flow."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys

import pytest
import typer
from typer.testing import CliRunner

from featurestore.datasets import dataset_names, get_dataset
from featurestore.datasets.errors import (
    DatasetBusy, DatasetError, DownloadFailed, InvalidIngestOption, UnknownDataset,
)
from featurestore.ingest.checksums import parse
from featurestore.ingest.lock import ingesting
from featurestore.ingest.pipeline import ingest as ingest_now
from featurestore.ingest.request import check_request
from fixtures_datasets import jpeg, tar_bytes
from store_fixtures import spec_for, write_store


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.logging.configuration import setup_logging
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        # Prefect's console handler keeps the sys.stderr it was configured with; configured first
        # under a test's capsys (test_flow_module_takes_the_cli_arguments), it would write to that
        # closed stream. Bound again here, it writes to the session's.
        setup_logging(incremental=False)
        yield


@pytest.fixture
def cli():
    from featurestore.cli.datasets_commands import register

    app = typer.Typer()
    register(app)
    return lambda *args: CliRunner().invoke(app, list(args))


def test_registry_entries_are_complete():
    names = dataset_names()
    assert {"fashion-mnist", "cifar10", "cub200", "flowers102", "tf-flowers", "stanford-dogs", "oxford-pets",
            "cats-vs-dogs", "imagefolder"} == set(names)
    for name in names:
        spec = get_dataset(name)
        assert spec.licence and spec.title
        for resource in spec.resources:
            assert resource.url.startswith(("http://", "https://")) and resource.filename in resource.url
            assert resource.checksum or resource.size or name == "stanford-dogs", f"{name} pins neither"
            if resource.checksum:
                parse(resource.checksum)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UnknownDataset, match="unknown dataset 'cifar-10': choose one of cats-vs-dogs, cifar10"):
        get_dataset("cifar-10")


def test_flow_module_takes_the_cli_arguments(root, capsys):
    from flows.ingest import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "Usage: python -m flows.ingest [OPTIONS] {dataset}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["cifar-10", "--root", str(root)])
    assert exit_.value.code == 2
    assert "unknown dataset 'cifar-10': choose one of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # refused before any flow run (or temporary server) starts
        main(["imagefolder", "--source", str(root), "--name", "../pets", "--root", str(root)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: invalid dataset name '../pets'") and err.count("\n") == 1
    for argv, message in (
            (["fashion-mnist", "--limit-per-class", "-3"],
             "--limit-per-class -3 is invalid: give a positive number of images, or 0 for every image"),
            (["fashion-mnist", "--ratios", "0.5,0.5"], "split ratios [0.5, 0.5] are invalid"),
            (["fashion-mnist", "--folds", "1"], "folds 1 is invalid"),
            (["imagefolder", "--source", str(root), "--name", "cifar10"], "--name 'cifar10' is a registered dataset's"),
            (["cifar10", "--name", "mine"], "--name 'mine' applies only to 'imagefolder'"),
            (["fashion-mnist", "--source", str(root)], "--source applies only to 'imagefolder'"),
            (["imagefolder"], "dataset 'imagefolder' needs --source")):
        with pytest.raises(SystemExit) as exit_:  # bad options: exit 2, before anything is fetched
            main([*argv, "--root", str(root)])
        err = capsys.readouterr().err
        assert (exit_.value.code, err.count("\n")) == (2, 1) and err.startswith(f"error: {message}"), err
    assert not (root / "downloads").exists()


def test_bad_folds_and_a_missing_source_are_refused_before_anything_is_made(root, tmp_path):
    # Both were found inside the run: folds once every image was fetched, unpacked and decoded (its
    # work files left behind), a missing source once the fetch step looked for it.
    folder = tmp_path / "photos"
    for c, name in enumerate(["left", "right"]):
        (folder / name).mkdir(parents=True)
        for k in range(6):
            (folder / name / f"{k}.jpg").write_bytes(jpeg(10 * c + k))
    with pytest.raises(InvalidIngestOption, match=r"^folds 1 is invalid: give 2 or more cross-validation folds$"):
        ingest_now("imagefolder", root, source=str(folder), name="mine", folds=1, progress=False)
    with pytest.raises(DatasetError, match=rf"^source '{tmp_path}/nowhere' does not exist; give a folder"):
        ingest_now("imagefolder", root, source=str(tmp_path / "nowhere"), name="mine", progress=False)
    # A file that is no archive was called a damaged one, once the flow had started (about 29 s later).
    (tmp_path / "notes.txt").write_text("not an archive")
    with pytest.raises(DatasetError, match=rf"^source '{tmp_path}/notes.txt' is a file but not a tar or zip archive "
                                           r"\(nor the start of one\); give a folder with one sub-folder per class, a "
                                           r"tar or zip archive of one \(.tar, .tar.gz, .tgz, .zip\), or an http\(s\) "
                                           r"URL of such an archive$"):
        check_request("imagefolder", name="mine", source=str(tmp_path / "notes.txt"))
    assert list(root.iterdir()) == []
    # 0 is every image wherever a limit is taken (the CLIs, a deployment's -p limit_per_class=0), as
    # the message above says: it was refused here while `featurestore run` read it as every image
    everything = ingest_now("imagefolder", root, source=str(folder), name="mine", limit_per_class=0, progress=False)
    assert everything.images == 12
    assert json.loads((root / "datasets" / "mine" / "dataset.json").read_text())["parameters"]["limit_per_class"] is None


def test_datasets_command_lists_and_reports_presence(cli, root):
    table = cli("datasets", "--root", str(root))
    assert table.exit_code == 0 and "cub200" in table.output and "official split" in table.output
    rows = json.loads(cli("datasets", "--root", str(root), "--json").output)
    assert {r["name"]: (r["present"], r["ingested"]) for r in rows}["fashion-mnist"] == (False, None)
    assert {r["name"]: r["official_split"] for r in rows} == {n: get_dataset(n).official_split for n in dataset_names()}
    # Where each dataset comes from and what to know about it, read nowhere before (review43 A5).
    assert {r["name"]: (r["homepage"], r["notes"]) for r in rows} == {
        n: (get_dataset(n).homepage, get_dataset(n).notes) for n in dataset_names()}
    assert "also read in place from the Debian package" in {r["name"]: r["notes"] for r in rows}["fashion-mnist"]


def test_datasets_counts_an_imagefolder_ingested_without_a_name(cli, root, tmp_path):
    # Before: its row read "imagefolder | - | 24 | - |" while one ingested with --name showed its counts
    folder = tmp_path / "photos"
    for c, name in enumerate(["left", "right", "up"]):
        (folder / name).mkdir(parents=True)
        for k in range(8):
            (folder / name / f"{k}.jpg").write_bytes(jpeg(10 * c + k))
    ingest_now("imagefolder", root, source=str(folder), progress=False)
    rows = {r["name"]: r for r in json.loads(cli("datasets", "--root", str(root), "--json").output)}
    assert (rows["imagefolder"]["images"], rows["imagefolder"]["ingested"], rows["imagefolder"]["classes"]) == (24, 24, 3)
    (line,) = [line for line in cli("datasets", "--root", str(root)).output.splitlines() if "imagefolder" in line]
    assert [cell.strip() for cell in line.split("│")[1:5]] == ["imagefolder", "24", "24", "3"]


def test_ingest_flow_through_the_cli_with_a_mirror(prefect_harness, cli, root, serve_layout, tmp_path, caplog):
    fixture = serve_layout("tf-flowers")
    from flows.ingest import ingest

    # 4 images per class leave the default ratios' test split empty: 2 train, 1 val, 1 test here.
    result = ingest(dataset="tf-flowers", root=str(root), seed=1, limit_per_class=4, ratios=[0.5, 0.25, 0.25],
                    checksums=fixture.checksums())
    assert result["images"] == 20 and result["classes"] == 5

    folder = tmp_path / "mine"
    for c, name in enumerate(["left", "right"]):
        (folder / name).mkdir(parents=True)
        for k in range(4):
            (folder / name / f"{k}.jpg").write_bytes(jpeg(10 * c + k))
    (folder / "right" / "broken.jpg").write_bytes(b"")
    write_store(root, dataset="mine", model="net")  # built from another manifest than the one ingested below
    shard_preprocessing = {**spec_for().preprocessing, "shard": [1, 2]}  # as extract records a shard
    write_store(root / "shards" / "mine" / "net" / "1-of-2", dataset="mine", model="net",
                preprocessing=shard_preprocessing)  # a shard of it, as well
    mine = root / "datasets" / "mine"
    with ingesting(mine):  # another process is ingesting 'mine' right now
        busy = cli("ingest", "imagefolder", "--root", str(root), "--source", str(folder), "--name", "mine")
    assert isinstance(busy.exception, DatasetBusy) and not (mine / "manifest.csv").exists()
    assert str(busy.exception).startswith(f"{mine}: another process (pid {os.getpid()}) is ingesting this dataset; wait")
    out = cli("ingest", "imagefolder", "--root", str(root), "--source", str(folder), "--name", "mine",
              "--ratios", "0.5,0.25,0.25", "--limit-per-class", "0", "--json")  # 0: every image, as `run` takes it
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output[out.output.index("{"):])
    assert summary["images"] == 8 and summary["quarantined"] == 1 and summary["stale_stores"] == ["net"]
    assert summary["stale_shards"] == ["net 1-of-2"]  # shards live under their own roots: ingest missed them
    # Each stale shard is named with the command that rebuilds that very shard.
    assert ("mine: shard net 1-of-2 is stale, built from an earlier manifest of 'mine' (ingested again since); "
            "rebuild it with `featurestore extract -d mine -m net --shard 1/2 --overwrite` before merging") in caplog.text
    # The warning holds in `featurestore run` too, which rebuilds the stale stores of its backbones.
    assert "stale; `featurestore run` rebuilds those of the backbones it runs, and `featurestore verify mine`" in caplog.text
    rows = {r["name"]: r for r in json.loads(cli("datasets", "--root", str(root), "--json").output)}
    # The registry's count, and what this root holds of it (a --limit-per-class subset here).
    assert rows["tf-flowers"]["present"] is True and rows["tf-flowers"]["ingested"] == 20
    assert rows["tf-flowers"]["images"] == get_dataset("tf-flowers").images
    assert rows["mine"] == {"name": "mine", "images": 8, "ingested": 8, "classes": 2, "size": None,
                            "licence": rows["imagefolder"]["licence"], "official_split": False, "present": True,
                            "title": f"imagefolder from {folder}", "homepage": "", "notes": None}
    assert "mine" in cli("datasets", "--root", str(root)).output


@pytest.mark.parametrize("stopped_in, outcome", [
    ("fetch_files", "it is as it was before this ingest"),
    ("stale_models", "its new manifest {} was already in place"),  # just after the commit
])
def test_ctrl_c_during_ingest_says_whether_the_dataset_was_replaced(prefect_harness, cli, root, tmp_path, monkeypatch,
                                                                    stopped_in, outcome):
    # Prefect calls either run "Crashed": the user could not tell whether the new images were in.
    import flows.ingest

    folder = tmp_path / "mine"
    for c, name in enumerate(["left", "right"]):
        (folder / name).mkdir(parents=True)
        for k in range(4):
            (folder / name / f"{k}.jpg").write_bytes(jpeg(10 * c + k))

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    owner = flows.ingest.steps if stopped_in == "fetch_files" else flows.ingest
    monkeypatch.setattr(owner, stopped_in, ctrl_c)
    stopped = cli("ingest", "imagefolder", "--root", str(root), "--source", str(folder), "--name", "mine",
                  "--ratios", "0.5,0.25,0.25")
    manifest = root / "datasets" / "mine" / "manifest.csv"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else None
    assert manifest.exists() is (stopped_in == "stale_models")
    assert stopped.exit_code != 0 and f"stopped: mine: {outcome.format(str(digest)[:12])}\n" in stopped.stderr


def test_manifest_bytes_are_standard_csv_with_quoting():
    import csv
    import io

    import pandas as pd

    from featurestore.datasets.manifest import COLUMNS, manifest_bytes

    names = ['plain', 'with, comma', 'with "quotes"', "two\nlines"]
    frame = pd.DataFrame({
        "id": [f"a/{i}.jpg" for i in range(4)], "source": [f"images/a/{i}.jpg" for i in range(4)],
        "label": [0, 1, 2, 3], "class_name": names, "split": "train", "fold": [0, 1, 2, 3],
        "width": 48, "height": 40, "mode": "RGB", "sha256": "0" * 64,
    })
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(frame.loc[:, list(COLUMNS)].astype(str).itertuples(index=False))
    data = manifest_bytes(frame)
    assert data == expected.getvalue().encode()
    assert pd.read_csv(io.BytesIO(data), keep_default_na=False)["class_name"].tolist() == names


def test_a_failed_download_counts_the_requests_it_made(prefect_harness, root, loopback, monkeypatch):
    # The download retries its own requests; the fetch task used to retry it twice more, so the
    # server saw 12 requests while the error said "4 attempts".
    from featurestore.ingest import download
    from flows.ingest import ingest

    monkeypatch.setattr(download, "BACKOFF_S", 0.01)
    loopback.fail("/photos.tar.gz", *[503] * 20)
    url = loopback.url + "/photos.tar.gz"
    with pytest.raises(DownloadFailed, match=rf"^{url}: failed after 6 attempts \(HTTP 503\); check the network"):
        ingest(dataset="imagefolder", root=str(root), source=url, name="mine")
    assert len(loopback.requests) == download.ATTEMPTS == 6


def test_failed_flow_logs_bad_input_in_one_line_and_keeps_other_tracebacks(prefect_harness, root, tmp_path):
    # Prefect logs a failed run with its traceback (~80 lines through its engine), then its state;
    # for bad input the one line that says what to do, once per run, is enough (it was said twice
    # per run). Any other exception keeps its traceback.
    from flows import RUN_LOGGERS, ExpectedErrorsInOneLine
    from flows.ingest import ingest

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    for name in RUN_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    # Cut short: found only once the prepare task unpacks it (a file that is no archive at all, or a
    # missing source, is refused before any task).
    (tmp_path / "photos.tgz").write_bytes(tar_bytes({f"cat/{k}.jpg": jpeg(k) for k in range(6)})[:900])
    try:
        # your own file: what to do about it, not a registry entry that a file of yours does not have
        with pytest.raises(DatasetError, match=r"photos.tgz: cannot be unpacked \(.*\); the "
                           "archive is damaged or incomplete; check it, or replace it with a complete copy"):
            ingest(dataset="imagefolder", root=str(root), source=str(tmp_path / "photos.tgz"), name="mine")
    finally:
        for name in RUN_LOGGERS:
            logging.getLogger(name).removeHandler(handler)
    failures = [r for r in records if "cannot be unpacked" in r.getMessage()]
    assert sorted(r.name for r in failures) == sorted(RUN_LOGGERS)  # the task run's and the flow run's
    assert all(r.exc_info is None and "Finished in state Failed" in r.getMessage() for r in failures)
    try:
        raise ValueError("a bug")
    except ValueError:
        bug = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "crash", None, sys.exc_info())
    assert ExpectedErrorsInOneLine().filter(bug) and bug.exc_info[0] is ValueError


def test_ingest_counts_and_names_the_files_it_skipped_as_not_images(prefect_harness, cli, root, tmp_path, caplog):
    # A photo saved as .heic, or notes beside the photos, vanished without a word.
    folder = tmp_path / "mine"
    for c, name in enumerate(["left", "right"]):
        (folder / name).mkdir(parents=True)
        for k in range(4):
            (folder / name / f"{k}.jpg").write_bytes(jpeg(10 * c + k))
    (folder / "left" / "notes.txt").write_text("fed at 8")
    (folder / "right" / "IMG_0001.heic").write_bytes(jpeg(7))
    out = cli("ingest", "imagefolder", "--root", str(root), "--source", str(folder), "--name", "mine",
              "--ratios", "0.5,0.25,0.25")
    assert out.exit_code == 0, out.output
    note = ("2 files skipped (not an image extension: .heic, .txt), e.g. left/notes.txt, right/IMG_0001.heic; "
            "docs/datasets.md lists the extensions read")
    # In the flow run's log (so a deployment run's too), not printed by the CLI alone.
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "skipped" in r.getMessage()] == [
        f"mine: {note}"]
    assert "│ skipped " in out.stdout and "left/notes.txt" in out.stdout


def test_ctrl_c_between_moving_dataset_json_and_the_manifest_says_to_ingest_again(prefect_harness, cli, root, tmp_path,
                                                                                 monkeypatch):
    # The outcome line sliced a hash that a half-replaced dataset no longer has: a TypeError traceback.
    import featurestore.ingest.pipeline as pipeline
    from featurestore.datasets.manifest import INFO_FILE

    folder = tmp_path / "mine"
    for c, name in enumerate(["left", "right"]):
        (folder / name).mkdir(parents=True)
        for k in range(4):
            (folder / name / f"{k}.jpg").write_bytes(jpeg(10 * c + k))
    request = ("ingest", "imagefolder", "--root", str(root), "--source", str(folder), "--name", "mine",
               "--ratios", "0.5,0.25,0.25")
    assert cli(*request).exit_code == 0
    (folder / "left" / "4.jpg").write_bytes(jpeg(99))  # a new image: a new manifest

    def stopped_after_dataset_json(stage, directory):
        os.replace(stage / INFO_FILE, directory / INFO_FILE)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_commit", stopped_after_dataset_json)
    stopped = cli(*request)
    assert stopped.exit_code != 0
    assert "stopped: mine: its manifest is half replaced; run the ingest of mine again\n" in stopped.stderr
    monkeypatch.undo()
    assert cli(*request).exit_code == 0
