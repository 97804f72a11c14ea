"""The feature-pipeline flow run locally: a rerun with unchanged inputs recomputes only the report."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_datasets import jpeg
from store_fixtures import write_store

import featurestore
from featurestore.datasets.errors import UnknownDataset

from featurestore.errors import InvalidName, InvalidOption, RootNotFound, RootNotWritable
from featurestore.ingest.pipeline import ingest as ingest_now
from featurestore.ingest.recorded import pipeline_ingest
from flows.evaluate import evaluate
from flows.extract import extract
from flows.ingest import ingest
from flows.pipeline import feature_pipeline, run_pipeline

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist (make setup installs it)")
def test_rerun_with_unchanged_inputs_recomputes_only_the_report(tmp_path):
    parameters = dict(datasets=["fashion-mnist"], models=["efficientnet_lite0"], classifiers=["knn"], stacking=False,
                      root=str(tmp_path), limit_per_class=5)
    first = run_pipeline(**parameters)
    assert first["recomputed"] == "1 manifest(s), 1 store(s) and the report"
    store = tmp_path / "stores" / "fashion-mnist" / "efficientnet_lite0.h5"
    before = store.stat().st_mtime_ns
    second = run_pipeline(**parameters)
    assert second["recomputed"] == "nothing but the report: every manifest and store was reused"
    assert store.stat().st_mtime_ns == before
    assert second["run_dir"] != first["run_dir"] and (Path(second["run_dir"]) / "report.md").exists()
    assert second["summary"] == first["summary"]
    # A larger subset is a new manifest: the pipeline rebuilds the store its ingest made stale.
    third = run_pipeline(**dict(parameters, limit_per_class=6))
    assert third["recomputed"] == "1 manifest(s), 1 store(s) and the report"
    assert [s["status"] for s in third["stores"]] == ["extracted"]


def _photos(folder: Path, first: int, last: int) -> None:
    for c, name in enumerate(("cat", "coffee")):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for k in range(first, last):
            (folder / name / f"{k:02d}.jpg").write_bytes(jpeg(40 * c + k, (64, 64)))


@pytest.mark.slow
def test_a_dataset_of_yours_is_ingested_again_as_recorded_taking_in_new_images(tmp_path, monkeypatch):
    # `featurestore run -d pets` used to be "unknown dataset" for anything `ingest imagefolder --name` made.
    _photos(tmp_path / "photos", 0, 8)
    root = tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    ingest_now("imagefolder", root, source="photos", name="pets", ratios=(0.5, 0.25, 0.25), seed=3, progress=False)
    info = root / "datasets" / "pets" / "dataset.json"
    recorded = json.loads(info.read_text())["parameters"]
    assert recorded["source"] == str(tmp_path / "photos")  # typed relative, kept absolute
    monkeypatch.chdir(root)  # a scheduled run starts elsewhere
    # The run's limit is for registered datasets: pets keeps what it was ingested with (no limit).
    parameters = dict(datasets=["pets"], models=["efficientnet_lite0"], classifiers=["knn"], stacking=False,
                      root=str(root), limit_per_class=2)
    first = run_pipeline(**parameters)
    assert first["recomputed"] == "0 manifest(s), 1 store(s) and the report"
    assert json.loads(info.read_text())["parameters"] == recorded
    _photos(tmp_path / "photos", 8, 12)
    second = run_pipeline(**parameters)
    assert second["recomputed"] == "1 manifest(s), 1 store(s) and the report"
    assert len(featurestore.load("pets", "efficientnet_lite0", root=root)) == 24
    with pytest.raises(UnknownDataset, match=r"unknown dataset 'pest': not registered \(.*fashion-mnist.*\) and not "
                                             r"ingested under that --name \(yours: pets\); for your own images run"):
        run_pipeline(datasets=["pest"], root=str(root))


def test_bad_names_and_unwritable_root_fail_before_any_work(tmp_path):
    with pytest.raises(InvalidName, match="unknown dataset 'mnist'"):
        run_pipeline(datasets=["mnist"], root=str(tmp_path))
    with pytest.raises(InvalidName, match="unknown backbone 'resnet5'"):
        run_pipeline(models=["resnet5"], root=str(tmp_path))
    with pytest.raises(InvalidName, match="unknown task runner 'slurm'"):
        run_pipeline(task_runner="slurm", root=str(tmp_path))
    # The flow as a deployment runs it: `-p device=cuda` on a host without one ingested first, then failed.
    with pytest.raises(InvalidName, match="device 'cuda': no CUDA GPU is visible"):
        feature_pipeline(device="cuda", limit_per_class=1, root=str(tmp_path))
    assert not (tmp_path / "datasets").exists()
    # A path below a regular file: unwritable even for root, who ignores permission bits.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(RootNotWritable, match=r"a-file/home: featurestore root is not writable \(Not a directory\)"):
        run_pipeline(root=str(blocker / "home"))
    with pytest.raises(RootNotWritable, match="a-file/home: featurestore root is not writable"):
        ingest(root=str(blocker / "home"), dataset="fashion-mnist")
    # Extract and evaluate, called directly (the Python API, a deployment), need an ingested root:
    # one that is not there is named, not made (it used to be created, empty).
    for flow, parameters in ((extract, dict(datasets=["fashion-mnist"], models=["efficientnet_lite0"])),
                             (evaluate, dict(datasets=["fashion-mnist"]))):
        for missing in (blocker / "home", tmp_path / "typo" / "home"):
            with pytest.raises(RootNotFound, match=f"no featurestore root at {missing}; check --root"):
                flow(root=str(missing), **parameters)
            assert not missing.exists()


_LEAVE_OUT = ", or leave {0} out for {1}"


@pytest.mark.parametrize("flow, parameters, message", [
    # A deployment's `-p models=[]` evaluated every store of the root, `classifiers=[]` every classifier,
    # and extract with nothing to extract reported success; the command line refuses empty lists.
    (feature_pipeline, dict(datasets=["toy"], models=[]), "models=[]: give at least one model (--models NAME)"),
    (feature_pipeline, dict(datasets=["toy"], classifiers=[]), "classifiers=[]: give at least one classifier "
                                                              "(--classifiers NAME)" + _LEAVE_OUT.format("classifiers", "every classifier")),
    (feature_pipeline, dict(datasets=[]), "datasets=[]: give at least one dataset (--datasets NAME)"),
    (extract, dict(datasets=["toy"], models=[]), "models=[]: give at least one model (--models NAME)"),
    (extract, dict(datasets=[], models=["efficientnet_lite0"]), "datasets=[]: give at least one dataset (--dataset NAME)"),
    (evaluate, dict(datasets=["toy"], models=[]), "models=[]: give at least one model (--models NAME)"
                                                  + _LEAVE_OUT.format("models", "every store of the dataset")),
    (evaluate, dict(datasets=["toy"], classifiers=[]), "classifiers=[]: give at least one classifier "
                                                       "(--classifiers NAME)" + _LEAVE_OUT.format("classifiers", "every classifier")),
])
def test_a_flow_refuses_an_empty_list_of_names_before_any_work(tmp_path, flow, parameters, message):
    root = tmp_path / "fs"
    write_store(root, n=30)  # a store of dataset "toy" that "every store" would have evaluated
    with pytest.raises(InvalidOption) as refused:
        flow(root=str(root), **parameters)
    assert str(refused.value) == message
    assert sorted(p.name for p in root.iterdir()) == ["stores"]


@pytest.mark.parametrize("command, set_in", [
    (["featurestore.cli", "run"], "environment"),
    (["featurestore.cli", "ingest", "fashion-mnist"], "environment"),
    (["featurestore.cli", "evaluate", "--dataset", "toy"], "environment"),
    # the flow module printed a traceback of 110 lines
    (["flows.extract", "--dataset", "toy"], "environment"),
    # `prefect config set PREFECT_API_URL=...`: it was missed, and the run ended in 133 lines of tracebacks
    (["featurestore.cli", "run"], "profile"),
])
def test_every_flow_command_says_in_one_line_when_the_prefect_api_is_down(tmp_path, command, set_in):
    root = tmp_path / "fs"
    write_store(root, n=30)  # evaluate checks the names first: give it a store of dataset "toy"
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/api"
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        if set_in == "environment":
            env["PREFECT_API_URL"] = url
        else:
            env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
            env.pop("PREFECT_PROFILES_PATH", None)
            (tmp_path / "prefect-home").mkdir()
            (tmp_path / "prefect-home" / "profiles.toml").write_text(
                f'active = "default"\n\n[profiles.default]\nPREFECT_API_URL = "{url}"\n')
        done = subprocess.run([sys.executable, "-m", *command, "--root", str(root)],
                              capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: Prefect API {url} does not answer (ConnectionError); start it with `prefect server start "
        "--host 127.0.0.1` or unset PREFECT_API_URL to use a temporary local server"]
    assert sorted(p.name for p in root.iterdir()) == ["stores"]


def test_a_temporary_prefect_server_that_does_not_start_in_time_is_one_line(tmp_path):
    # It was Prefect's RuntimeError, 40 lines of traceback; a first start on a busy 2-core machine
    # (it creates its database) outlasted the default 20 s. One second is never enough to start one.
    root = tmp_path / "fs"
    write_store(root, n=30)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    env.pop("PREFECT_PROFILES_PATH", None)
    done = subprocess.run([sys.executable, "-m", "featurestore.cli", "evaluate", "--dataset", "toy",
                           "--root", str(root)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: the temporary Prefect server did not answer within 1 s; run again (a first start creates its "
        "database), allow it longer with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start one with "
        "`prefect server start --host 127.0.0.1` and export PREFECT_API_URL=http://127.0.0.1:4200/api")
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in root.iterdir()) == ["stores"]


@pytest.mark.parametrize("option, message", [
    (["--limit-per-class", "-5"], "error: --limit-per-class -5 is invalid"),  # 0 is every image
    (["-d", "pest"], "error: unknown dataset 'pest': not registered"),
    (["--dataset", "pest"], "error: unknown dataset 'pest': not registered"),  # as evaluate and extract spell it
    (["--model", "resnet5"], "error: unknown backbone 'resnet5'"),
])
def test_run_refuses_an_unknown_name_or_a_bad_option_before_any_flow_runs(tmp_path, option, message):
    # In one line and exit 2, without the temporary Prefect server's start (and its log lines) first.
    done = subprocess.run([sys.executable, "-m", "featurestore.cli", "run", *option, "--root", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(message)


def test_run_takes_imagefolder_ingested_under_its_own_name_as_recorded(tmp_path, monkeypatch):
    # `featurestore run -d imagefolder` re-ingested it as a registered dataset, with no source: it
    # failed inside both flow runs with "needs --source", an option run does not have.
    root = tmp_path / "home"
    _photos(tmp_path / "photos", 0, 8)
    monkeypatch.chdir(tmp_path)
    first = ingest_now("imagefolder", root, source="photos", ratios=(0.5, 0.25, 0.25), seed=3, progress=False)
    monkeypatch.chdir(root)  # a scheduled run starts elsewhere
    recorded = pipeline_ingest("imagefolder", root, seed=0, limit_per_class=2)
    assert recorded == {"dataset": "imagefolder", "name": "imagefolder", "source": str(tmp_path / "photos"),
                        "ratios": [0.5, 0.25, 0.25], "seed": 3, "folds": 5, "limit_per_class": None}
    again = ingest_now(root=root, progress=False, **recorded)
    assert (again.manifest_hash, again.images) == (first.manifest_hash, 16)


def test_run_of_imagefolder_never_ingested_says_to_ingest_it_first_before_any_flow_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "featurestore.cli", "run", "-d", "imagefolder", "--root",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.strip() == (
        f"error: {tmp_path}/datasets/imagefolder: 'imagefolder' has not been ingested, and its images are yours to "
        "name; ingest them first with `featurestore ingest imagefolder --source DIR|ARCHIVE|URL [--name NAME]`, "
        "then give that name to -d")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_checkout_step_says_what_is_missing_even_when_the_run_logs_cannot_be_reached(monkeypatch, caplog):
    # The reason also goes to the run's logs through the API; an API that cannot be reached must not
    # replace it with a connection error.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.checkout import CheckoutNotFound, enter_checkout

    monkeypatch.delenv("FEATURESTORE_CHECKOUT", raising=False)
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "00000000-0000-0000-0000-000000000001")
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # nothing listens on port 9
        with pytest.raises(CheckoutNotFound, match=r"^\$FEATURESTORE_CHECKOUT is not set on this worker"):
            enter_checkout()
    assert "could not add the reason to the run's logs" in caplog.text
