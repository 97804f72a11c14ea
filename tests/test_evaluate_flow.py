"""The evaluate flow on real Prefect (test harness): fan-out, skipped stores, artifacts, reruns."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.testing.utilities import prefect_test_harness
from sklearn.neighbors import KNeighborsClassifier

from _evaluate_stores import DATASET, MODELS, digits_rows, write_digits_stores, write_store
from featurestore.classifiers import registry
from featurestore.classifiers.registry import ClassifierSpec
from featurestore.errors import InvalidName, InvalidOption
from featurestore.evaluation import StoresDisagree, validate_results
from featurestore.evaluation.errors import NothingToEvaluate
from featurestore.store import RowTable
from flows.artifacts import artifact_key, name_part, run_kind_parts
from flows.evaluate import main, run_evaluate

FAST = ["logreg", "knn"]


@pytest.fixture(scope="session")
def harness():
    with prefect_test_harness():
        yield


@pytest.fixture(scope="module")
def two_runs(harness, tmp_path_factory):
    """Digits stores plus an interrupted one; the flow run twice with the same seed."""
    root = tmp_path_factory.mktemp("flow-root")
    write_digits_stores(root)
    pixels, rows = digits_rows()
    write_store(root, "interrupted", pixels, rows, finalize=False)
    runs = [Path(run_evaluate(datasets=[DATASET], classifiers=FAST, in_sample=True, seed=7, root=str(root)))
            for _ in range(2)]
    return root, runs


def _document(run: Path) -> dict:
    document = json.loads((run / "results.json").read_text())
    validate_results(document)
    return document


def test_flow_fans_out_every_model_and_classifier_plus_ensembles(two_runs):
    _, runs = two_runs
    document = _document(runs[0])
    answers = {(r["model"], r["classifier"]) for r in document["results"]}
    joined = "+".join(sorted(MODELS))
    assert answers == {(m, c) for m in MODELS for c in FAST} | {
        (joined, c) for c in ("stacking_cv", "soft_vote", "stacking_in_sample", "early_fusion")}
    assert {p.name for p in runs[0].iterdir()} >= {"report.md", "results.csv", "results.json", "accuracy.png",
                                                  f"confusion_{DATASET}.png"}
    assert document["parameters"]["seed"] == 7
    assert document["summary"][DATASET].startswith("best: ")
    stacking = next(r for r in document["results"] if r["classifier"] == "stacking_cv")
    logreg = {r["model"]: r["params"] for r in document["results"] if r["classifier"] == "logreg"}
    assert stacking["params"]["base"] == logreg  # the ensembles reuse the C each backbone chose


def test_incomplete_store_is_skipped_with_its_reason(two_runs):
    document = _document(two_runs[1][0])
    skipped = [s for s in document["skipped"] if s["model"] == "interrupted"]
    assert len(skipped) == 1 and "interrupted" in skipped[0]["reason"] and "extract again" in skipped[0]["reason"]
    assert all(r["model"] != "interrupted" for r in document["results"])
    assert "interrupted" in (two_runs[1][0] / "report.md").read_text()


def test_rerun_reads_the_same_stores_and_reproduces_the_numbers(two_runs):
    first, second = (_document(run) for run in two_runs[1])
    assert first["run_id"] != second["run_id"]
    stable = ("dataset", "model", "classifier", "accuracy", "top5_accuracy", "macro_f1", "confusion_matrix",
              "params", "store_fingerprints")
    assert [{k: r[k] for k in stable} for r in first["results"]] == [{k: r[k] for k in stable} for r in second["results"]]


async def _artifacts(key: str) -> list:
    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_artifacts_have_stable_keys_and_keep_history(two_runs, anyio_backend):
    documents = [_document(run) for run in two_runs[1]]
    table = await _artifacts(artifact_key("evaluate", DATASET))
    assert artifact_key("evaluate", DATASET) == "evaluate-digits" and len(table) == 2 and {a.type for a in table} == {"table"}
    rows = json.loads(table[0].data) if isinstance(table[0].data, str) else table[0].data
    assert {r["classifier"] for r in rows} >= {"logreg", "stacking_cv"}
    summaries = await _artifacts(artifact_key("evaluate", DATASET, "summary"))
    assert len(summaries) == 2 and all(documents[0]["summary"][DATASET] in a.data for a in summaries)
    assert len(await _artifacts("evaluate-report")) == 2


@pytest.fixture(scope="module")
def learning_curve_run(harness, tmp_path_factory) -> dict:
    """A learning-curve run (5 images per class, kNN only, one model): a run of another kind than two_runs'."""
    root = tmp_path_factory.mktemp("learning-curve-root")
    write_digits_stores(root, models=["pixels"])
    return _document(Path(run_evaluate(datasets=[DATASET], classifiers=["knn"], seed=3, root=str(root),
                                       train_per_class=5)))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_artifacts_say_what_kind_of_run_they_come_from(two_runs, learning_curve_run, anyio_backend):
    full_id, few_id = _document(two_runs[1][0])["run_id"], learning_curve_run["run_id"]
    few_about = ("train_per_class=5 (at most 5 train+val images per class); classifiers=knn; models=pixels; "
                 "stacking=yes; seed=3")
    full_about = "train_per_class=all; classifiers=logreg,knn; models=fourier,pixels; stacking=yes; seed=7"
    # a learning-curve point has keys of its own, so the full-data history holds full runs only
    for full_key, few_key in (("evaluate-digits", "evaluate-digits-tpc5"),
                              ("evaluate-digits-summary", "evaluate-digits-tpc5-summary"),
                              ("evaluate-report", "evaluate-report-tpc5")):
        full = await _artifacts(full_key)
        assert not any(few_id in a.description for a in full)
        (few,) = [a for a in await _artifacts(few_key) if few_id in a.description]
        (latest_full,) = [a for a in full if full_id in a.description]
        assert few_about in few.description and full_about in latest_full.description
        if few.type == "markdown":
            assert f"Run `{few_id}`: {few_about}" in few.data and f"Run `{full_id}`: {full_about}" in latest_full.data


def test_a_cap_that_capped_no_class_publishes_under_the_full_data_keys():
    # report --history files such a run under "all"; its artifacts went to evaluate-<dataset>-tpc1000.
    def document(cap, fitted):
        return {"parameters": {"train_per_class": cap}, "results": [{"train_per_class": fitted}]}

    assert run_kind_parts(document(1000, None)) == ()
    assert run_kind_parts(document(5, 5)) == ("tpc5",)
    assert run_kind_parts(document(None, None)) == ()


def test_disagreeing_stores_stop_the_flow_before_fitting(harness, tmp_path):
    pixels, rows = digits_rows()
    write_store(tmp_path, "pixels", pixels, rows)
    shuffled = RowTable(ids=rows.ids, labels=rows.labels[::-1], class_names=rows.class_names, split=rows.split,
                        fold=rows.fold)
    write_store(tmp_path, "fourier", pixels, shuffled)
    with pytest.raises(StoresDisagree, match="labels.*or evaluate each on its own with --no-stacking"):
        run_evaluate(datasets=[DATASET], classifiers=["knn"], root=str(tmp_path))
    assert not (tmp_path / "runs").exists()
    run = Path(run_evaluate(datasets=[DATASET], classifiers=["knn"], stacking=False, root=str(tmp_path)))
    assert {r["model"] for r in _document(run)["results"]} == set(MODELS)


def test_train_per_class_0_given_to_the_flow_is_recorded_as_a_full_fit(harness, tmp_path):
    # A deployment run's -p train_per_class=0 reaches the flow as given: only the CLI turned 0 into a
    # full fit's null, so such a run was recorded with a cap of 0.
    write_digits_stores(tmp_path, models=["pixels"])
    run = Path(run_evaluate(datasets=[DATASET], classifiers=["knn"], stacking=False, root=str(tmp_path),
                            train_per_class=0))
    assert _document(run)["parameters"]["train_per_class"] is None


def test_bad_train_per_class_is_refused_before_any_task(harness, tmp_path, capsys):
    write_digits_stores(tmp_path)
    with pytest.raises(InvalidOption, match="--train-per-class -1 is invalid"):
        run_evaluate(datasets=[DATASET], classifiers=["knn"], root=str(tmp_path), train_per_class=-1)
    with pytest.raises(SystemExit) as exit_:
        main(["--dataset", DATASET, "--train-per-class", "-3", "--root", str(tmp_path)])
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and error.count("\n") == 1 and "--train-per-class -3 is invalid" in error
    assert not (tmp_path / "runs").exists()


def test_a_misspelled_name_or_no_usable_store_fails_without_a_new_report(two_runs, tmp_path, capsys):
    root, _ = two_runs
    before = sorted((root / "runs").iterdir())
    with pytest.raises(NothingToEvaluate, match=r"dataset 'digts' has no stores under .* \(datasets with stores: digits\)"):
        run_evaluate(datasets=["digts"], classifiers=["knn"], root=str(root))
    with pytest.raises(NothingToEvaluate, match=r"no store for 'pixel' \(its stores: .*pixels.*\); check the name"):
        run_evaluate(datasets=[DATASET], models=["pixel", "pixels"], classifiers=["knn"], root=str(root))
    with pytest.raises(NothingToEvaluate, match="no store can be evaluated: .*interrupted"):
        run_evaluate(datasets=[DATASET], models=["interrupted"], classifiers=["knn"], root=str(root))
    with pytest.raises(SystemExit) as exit_:
        main(["--dataset", "digts", "--root", str(root)])
    assert exit_.value.code == 1 and capsys.readouterr().err.count("\n") == 1
    assert sorted((root / "runs").iterdir()) == before


def test_process_pool_runner_gives_the_thread_runner_numbers(two_runs):
    root, runs = two_runs
    run = Path(run_evaluate(task_runner="processes", datasets=[DATASET], classifiers=FAST, in_sample=True,
                            seed=7, root=str(root)))
    threads, processes = _document(runs[0]), _document(run)
    assert [r["accuracy"] for r in threads["results"]] == [r["accuracy"] for r in processes["results"]]


def test_unknown_task_runner_or_classifier_is_refused(harness, tmp_path, capsys):
    with pytest.raises(InvalidName, match="task runner"):
        run_evaluate(task_runner="slurm", datasets=[DATASET], root=str(tmp_path))
    with pytest.raises(SystemExit) as exit_:
        main(["--dataset", DATASET, "--classifiers", "forest", "--root", str(tmp_path)])
    assert exit_.value.code == 2 and "unknown classifier 'forest'" in capsys.readouterr().err


def test_a_class_with_one_train_row_skips_only_stacking(harness, tmp_path):
    # two backbones, class '0' with a single train row: the singles and early fusion are scored
    pixels, rows = digits_rows()
    chosen = np.concatenate([np.flatnonzero((rows.split == s) & (rows.labels == label))[:n]
                             for s, counts in (("train", (1, 4)), ("test", (1, 1))) for label, n in enumerate(counts)])
    table = RowTable(ids=rows.ids[chosen], labels=rows.labels[chosen], class_names=rows.class_names[:2],
                     split=rows.split[chosen], fold=rows.fold[chosen])
    for model in MODELS:
        write_store(tmp_path, model, pixels[chosen], table)
    run = Path(run_evaluate(datasets=[DATASET], classifiers=FAST, root=str(tmp_path)))
    document = _document(run)
    assert {(r["model"], r["classifier"]) for r in document["results"]} == {
        (m, c) for m in MODELS for c in FAST} | {("+".join(sorted(MODELS)), "early_fusion")}
    (skipped,) = document["skipped"]
    assert skipped["classifier"] == "stacking" and skipped["reason"] == (
        "only stacking and its soft vote are skipped: stacking needs at least 2 train+val rows per class "
        "for its cross-validation; class '0' has 1")
    assert skipped["reason"] in (run / "report.md").read_text()


def test_one_usable_store_skips_every_ensemble_once_and_says_what_to_do(harness, tmp_path, capsys):
    # Before: "only stacking is skipped", while early fusion and the soft vote were skipped too
    write_digits_stores(tmp_path, models=["pixels"])
    with pytest.raises(SystemExit) as exit_:
        main(["--dataset", DATASET, "-c", "knn", "--root", str(tmp_path)])
    assert exit_.value.code == 0
    (run,) = (tmp_path / "runs").iterdir()
    document = _document(run)
    assert {r["classifier"] for r in document["results"]} == {"knn"}
    assert document["skipped"] == [{
        "dataset": DATASET, "model": "pixels", "classifier": "ensembles",
        "reason": f"stacking, soft_vote and early_fusion combine at least two usable stores of {DATASET}; pixels is "
                  f"the only one: extract a second backbone (featurestore extract -d {DATASET} -m NAME)"}]
    out = capsys.readouterr().out
    assert out.count("skipped ensembles on") == 1 and f"skipped ensembles on {DATASET}/pixels: stacking" in out


def test_evaluate_json_prints_the_runs_parameters_and_counts(harness, tmp_path, capsys):
    write_digits_stores(tmp_path, models=["pixels"])
    with pytest.raises(SystemExit) as exit_:
        main(["--dataset", DATASET, "-c", "knn", "--train-per-class", "5", "--json", "--root", str(tmp_path)])
    assert exit_.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    (run,) = (tmp_path / "runs").iterdir()
    assert printed == _document(run) and printed["parameters"]["train_per_class"] == 5
    (record,) = printed["results"]
    assert record["n_fit"] == 50 and record["store_fingerprints"].keys() == {"pixels"}  # train+val together


def test_no_usable_test_rows_is_refused_before_prefect_starts(tmp_path, capsys):
    # no harness: the refusal comes before any Prefect API is needed
    pixels, rows = digits_rows()
    write_store(tmp_path, "pixels", pixels, rows, failed=rows.split == "test")
    with pytest.raises(SystemExit) as exit_:
        main(["--dataset", DATASET, "--root", str(tmp_path)])
    error = capsys.readouterr().err
    assert exit_.value.code == 1 and error.count("\n") == 1 and "has no usable test rows" in error
    assert not (tmp_path / "runs").exists()


def test_no_usable_store_is_refused_before_prefect_starts(tmp_path):
    # It started the temporary Prefect server first (~28 s), then said that no store could be evaluated.
    pixels, rows = digits_rows()
    write_store(tmp_path, "interrupted", pixels, rows, finalize=False)
    checkout = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    ran = subprocess.run([sys.executable, "-m", "featurestore", "evaluate", "-d", DATASET, "--root", str(tmp_path)],
                         capture_output=True, text=True, cwd=checkout, env=dict(env, PYTHONPATH=str(checkout)),
                         timeout=300)
    assert (ran.returncode, ran.stdout) == (1, ""), ran.stderr
    (line,) = ran.stderr.splitlines()
    assert line.startswith("error: no store can be evaluated: ") and "interrupted.h5.partial: extraction of " in line
    assert not (tmp_path / "runs").exists()


class BrokenClassifier(Exception):
    """What the user's broken classifier below raises."""


def _broken(params, seed, n_jobs, shape):
    raise BrokenClassifier("this classifier cannot be built")


def _ctrl_c_once():
    """A builder that presses Ctrl-C (SIGINT to this process) the first time it runs, then builds as usual."""
    pressed = threading.Event()

    def build(params, seed, n_jobs, shape):
        if not pressed.is_set():
            pressed.set()
            signal.raise_signal(signal.SIGINT)
        return KNeighborsClassifier(n_neighbors=1)
    return build


@pytest.fixture
def user_classifiers(monkeypatch):
    """Two registered classifiers of a user: one whose fit fails, one during whose fit Ctrl-C is pressed.

    SIGINT gets Python's own handler for the test: a background job (as CI can run) ignores it,
    and the pressed Ctrl-C would then do nothing."""
    monkeypatch.setattr(registry.CLASSIFIERS, "_entries", dict(registry.CLASSIFIERS._entries))
    for name, build in (("broken", _broken), ("ctrl_c", _ctrl_c_once())):
        registry.register(ClassifierSpec(name=name, description=name, build=build, grid=({},)))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("classifier, raised", [("broken", BrokenClassifier), ("ctrl_c", KeyboardInterrupt)])
def test_a_failed_or_stopped_run_leaves_nothing_under_runs(harness, tmp_path, user_classifiers, classifier, raised):
    # one worker: logistic regression writes its part before the other classifier fails or is stopped
    write_digits_stores(tmp_path, models=["pixels"])
    from featurestore.extract.stop import stop_requested

    with pytest.raises(raised):
        run_evaluate(datasets=[DATASET], classifiers=["logreg", classifier], workers=1, root=str(tmp_path))
    assert list((tmp_path / "runs").iterdir()) == []
    # A stop asked for this run is not left for the next one in the process, which stopped at its first batch.
    assert not stop_requested()


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    """A Fashion-MNIST subset (30 images per class and split, official split) through efficientnet_lite0."""
    from featurestore.extract.runner import extract
    from featurestore.ingest.pipeline import ingest

    root = tmp_path_factory.mktemp("fashion-root")
    ingest("fashion-mnist", root, limit_per_class=30, progress=False)
    extract("fashion-mnist", ["efficientnet_lite0"], root, device="cpu", progress=False)
    return root


@pytest.mark.slow
def test_fashion_mnist_through_efficientnet_lite0(harness, fashion_root):
    import featurestore
    from featurestore.classifiers import get_classifier

    run = Path(run_evaluate(datasets=["fashion-mnist"], classifiers=FAST, root=str(fashion_root), seed=0))
    document = _document(run)
    records = {r["classifier"]: r for r in document["results"]}
    assert set(records) == set(FAST)
    assert records["logreg"]["selection"]["method"] == "cv"  # the official split has no val rows
    assert records["logreg"]["accuracy"] > 0.6 and records["logreg"]["class_names"][0] == "T-shirt/top"
    assert [s["classifier"] for s in document["skipped"]] == ["ensembles"]  # one backbone: nothing to combine
    arrays = featurestore.load_arrays("fashion-mnist", "efficientnet_lite0", root=fashion_root)
    fit, test = arrays.split != "test", arrays.split == "test"
    model = get_classifier("logreg").build(records["logreg"]["params"], 0, 1, arrays.features[fit].shape)
    predicted = model.fit(arrays.features[fit], arrays.labels[fit]).predict(arrays.features[test])
    assert records["logreg"]["accuracy"] == pytest.approx(np.mean(predicted == arrays.labels[test]))
    for picture in ("accuracy.png", "confusion_fashion-mnist.png"):
        assert (run / picture).stat().st_size > 10_000
    # A learning-curve point from the same store: 10 train images per class, the same test split.
    few = _document(Path(run_evaluate(datasets=["fashion-mnist"], classifiers=["knn"], root=str(fashion_root),
                                      seed=0, train_per_class=10)))
    assert few["parameters"]["train_per_class"] == 10
    assert few["results"][0]["n_fit"] == 100 and few["results"][0]["n_test"] == records["logreg"]["n_test"]


def test_artifact_keys_of_different_datasets_never_share_a_history():
    # Dataset names may hold `_ . +` and capitals, which a key may not: fashion_mnist and
    # Fashion.MNIST both became evaluate-fashion-mnist, a dataset "report" published its table under
    # the run-wide report's key, "x-summary"'s table under x's summary key, and a long name lost
    # the parts after it to the 100-character cut.
    assert name_part("fashion-mnist") == "fashion-mnist" and name_part("digits") == "digits"  # keys as before
    names = ["fashion-mnist", "fashion_mnist", "Fashion.MNIST", "report", "x", "x-summary", "x-tpc5", "a+b", "a-b",
             "n" * 95]
    keys = {artifact_key("evaluate", name_part(n), *kind) for n in names for kind in ((), ("summary",), ("tpc5",))}
    keys |= {artifact_key("evaluate", "report"), artifact_key("evaluate", "report", "tpc5")}
    assert len(keys) == 3 * len(names) + 2
    assert all(re.fullmatch(r"[a-z0-9-]{1,100}", key) for key in keys)
