"""Report files, their schema, the summary line, run history and `featurestore report`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import typer
from matplotlib.figure import Figure
from PIL import Image
from typer.testing import CliRunner

from _evaluate_stores import DATASET, MODELS, digits_rows, write_digits_stores, write_store
from featurestore.cli import evaluate_commands, main
from featurestore.evaluation import (
    NoRuns,
    discard_unfinished,
    evaluate_classifier,
    evaluate_early_fusion,
    evaluate_stacking,
    history_table,
    load_run,
    new_run_dir,
    write_report,
)
from featurestore.evaluation.history import HISTORY_KEYS
from featurestore.evaluation.parts import part_path, save_records
from featurestore.evaluation import plots
from featurestore.evaluation.report import TABLE_COLUMNS, run_parameters_line, selection_text
from featurestore.evaluation.summary import add_gains, best_record, summary_line
from featurestore.evaluation.threads import limit_native_threads

limit_native_threads(1)

SUMMARY = re.compile(r"^best: \S.* \d+\.\d% \([+-]\d+\.\d over \S+ \+ \S+\)$|^best: \S+ \+ \S+ \d+\.\d%$")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A root with digits stores and two finished runs of the same records."""
    root = tmp_path_factory.mktemp("report-root")
    write_digits_stores(root)
    records = [evaluate_classifier(DATASET, m, c, root=root) for m in MODELS for c in ("logreg", "knn")]
    records += evaluate_stacking(DATASET, list(MODELS), root=root, in_sample=True)
    skipped = [{"dataset": DATASET, "model": "efficientnet_lite9", "reason": "no store for it; run extract"}]
    runs = [new_run_dir(root) for _ in range(2)]
    documents = [write_report(run, records, skipped, {"seed": 0}) for run in runs]
    return root, runs, documents


def test_every_report_file_is_written_and_valid(evaluated):
    _, runs, documents = evaluated
    run = runs[0]
    assert {p.name for p in run.iterdir()} >= {"report.md", "results.csv", "results.json", "results.schema.json",
                                              "accuracy.png", f"confusion_{DATASET}.png"}
    document = json.loads((run / "results.json").read_text())
    jsonschema.validate(document, json.loads((run / "results.schema.json").read_text()))
    assert document == json.loads(json.dumps(documents[0]))
    for picture in ("accuracy.png", f"confusion_{DATASET}.png"):
        with Image.open(run / picture) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300
    table = pd.read_csv(run / "results.csv")
    assert list(table.columns) == TABLE_COLUMNS and len(table) == len(document["results"])
    assert table["accuracy"].is_monotonic_decreasing
    singles = table[table["kind"] == "single"]
    assert singles["selection"].str.fullmatch(r"val: fit \d+, scored \d+").all()
    assert table.loc[table["kind"] == "ensemble", "selection"].isna().all()  # nothing was selected
    markdown = (run / "report.md").read_text()
    assert "| chosen on |" in markdown and singles["selection"].iloc[0] in markdown
    assert document["summary"][DATASET] in markdown and "in-sample, leaky" in markdown
    assert "efficientnet_lite9: no store" in markdown and "![accuracy](accuracy.png)" in markdown


def test_a_dataset_named_accuracy_keeps_the_heat_map_and_its_confusion_matrix_apart(evaluated, tmp_path):
    records = [dict(r, dataset="accuracy") for r in evaluated[2][0]["results"]]
    run = new_run_dir(tmp_path)
    write_report(run, records, [], {"seed": 0})
    pictures = [line for line in (run / "report.md").read_text().splitlines() if line.startswith("![")]
    assert pictures == ["![accuracy](accuracy.png)", "![confusion matrix accuracy](confusion_accuracy.png)"]


def test_selection_text_says_how_parameters_were_chosen():
    chosen = {"method": "subsample", "scores": [], "seconds": 1.0, "fit_rows": 15000, "score_rows": 10000}
    assert selection_text({"selection": chosen}) == "subsample: fit 15000, scored 10000"
    assert selection_text({"selection": {**chosen, "method": "default", "fit_rows": 0}}) == "default"
    assert selection_text({"selection": {"method": "holdout", "scores": []}}) == "holdout"  # an older run
    assert selection_text({}) == ""


def test_schema_rejects_a_broken_document(evaluated):
    document = json.loads(json.dumps(evaluated[2][0]))
    del document["results"][0]["accuracy"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, json.loads((evaluated[1][0] / "results.schema.json").read_text()))


def test_ensembles_carry_their_gain_over_the_best_single_backbone(evaluated):
    results = evaluated[2][0]["results"]
    singles = [r for r in results if r["kind"] == "single"]
    best = max(singles, key=lambda r: r["accuracy"])
    for record in results:
        if record["kind"] == "ensemble":
            assert record["best_single"] == f"{best['model']} + {best['classifier']}"
            assert record["gain_over_best_single"] == pytest.approx(100 * (record["accuracy"] - best["accuracy"]),
                                                                    abs=1e-6)
        else:
            assert record["gain_over_best_single"] is None


def test_a_backbone_named_with_a_plus_is_found_among_its_ensembles_members(tmp_path):
    pixels, rows = digits_rows()
    models = ["raw+pixels", "fourier"]
    for model in models:
        write_store(tmp_path, model, pixels, rows)
    singles = [evaluate_classifier(DATASET, m, "logreg", root=tmp_path) for m in models]
    ensembles = evaluate_stacking(DATASET, models, root=tmp_path)
    ensembles.append(evaluate_early_fusion(DATASET, models, root=tmp_path))
    best = max(singles, key=lambda r: r["accuracy"])
    assert best["model"] == "raw+pixels"  # the store the name split would not find
    for record in add_gains(singles + ensembles)[len(singles):]:
        assert record["best_single"] == "raw+pixels + logreg"
        assert record["gain_over_best_single"] == round(100 * (record["accuracy"] - best["accuracy"]), 6)
        assert record["members"] == models


def _records_with_failed_test_rows(root, failed_in: dict[str, int]) -> list[dict]:
    """Logreg on each digits store, stacking and early fusion over them, where store ``m`` failed its
    first ``failed_in[m]`` test images."""
    pixels, rows = digits_rows()
    test = np.flatnonzero(rows.split == "test")
    for model in MODELS:
        failed = np.zeros(len(rows), bool)
        failed[test[:failed_in[model]]] = True
        write_store(root, model, pixels, rows, failed=failed)
    records = [evaluate_classifier(DATASET, m, "logreg", root=root) for m in MODELS]
    records += evaluate_stacking(DATASET, list(MODELS), root=root)
    return records + [evaluate_early_fusion(DATASET, list(MODELS), root=root)]


def test_no_gain_where_the_singles_were_scored_on_other_test_rows(tmp_path, cli):
    # fourier failed a third of the test images: the ensembles are scored on the rest, pixels on all
    records = _records_with_failed_test_rows(tmp_path, {"pixels": 0, "fourier": 120})
    run = new_run_dir(tmp_path)
    document = write_report(run, records, [], {"seed": 0})
    ensembles = [r for r in document["results"] if r["kind"] == "ensemble"]
    n_test = {r["model"]: r["n_test"] for r in document["results"] if r["kind"] == "single"}
    assert n_test["pixels"] == n_test["fourier"] + 120 and {r["n_test"] for r in ensembles} == {n_test["fourier"]}
    for record in ensembles:
        assert record["gain_over_best_single"] is None and record["best_single"] is None
        assert record["no_gain_reason"] == "singles scored on other test rows"
    assert document["summary"][DATASET].endswith(" scored on other test rows: no gain)")
    table = pd.read_csv(run / "results.csv")
    assert table["gain_over_best_single"].isna().all() and table["best_single"].isna().all()
    reasons = table.set_index("classifier")["no_gain_reason"]
    assert reasons["soft_vote"] == "singles scored on other test rows" and reasons.isna().sum() == len(MODELS)
    markdown = (run / "report.md").read_text()
    assert markdown.count("| none: singles scored on other test rows |") == len(ensembles)
    shown = CliRunner().invoke(cli, ["report", "--root", str(tmp_path)], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("none: singles scored on other test rows") == len(ensembles)
    assert "singles scored on other test rows than ensembles" in plots.heat_map(document["results"]).title


def test_stores_that_failed_the_same_images_keep_their_gain(tmp_path):
    records = add_gains(_records_with_failed_test_rows(tmp_path, {"pixels": 120, "fourier": 120}))
    best = max((r for r in records if r["kind"] == "single"), key=lambda r: r["accuracy"])
    for record in (r for r in records if r["kind"] == "ensemble"):
        assert record["n_test"] == best["n_test"] and record["no_gain_reason"] is None
        assert record["best_single"] == f"{best['model']} + logreg"
        assert record["gain_over_best_single"] == round(100 * (record["accuracy"] - best["accuracy"]), 6)
    assert SUMMARY.match(summary_line(records))


def test_gain_is_written_without_float_noise(evaluated, tmp_path):
    base = {**evaluated[2][0]["results"][0], "gain_over_best_single": None, "best_single": None}
    records = [{**base, "model": "pixels", "classifier": "logreg", "kind": "single", "accuracy": 0.73},
               {**base, "model": "pixels", "classifier": "early_fusion", "kind": "ensemble", "accuracy": 0.75}]
    run = new_run_dir(tmp_path)
    document = write_report(run, records, [], {"seed": 0})
    assert document["results"][1]["gain_over_best_single"] == 2.0  # 100 * (0.75 - 0.73) is 2.0000000000000018
    assert json.loads((run / "results.json").read_text())["results"][1]["gain_over_best_single"] == 2.0
    csv = (run / "results.csv").read_text()
    assert ",2.0," in csv and "2.00000000" not in csv


def test_summary_line_names_best_leak_free_answer_and_its_gain():
    base = {"dataset": "d", "leak_free": True}
    records = add_gains([
        {**base, "model": "lite0", "classifier": "logreg", "kind": "single", "accuracy": 0.901},
        {**base, "model": "lite2", "classifier": "logreg", "kind": "single", "accuracy": 0.902},
        {**base, "model": "lite0+lite2", "classifier": "stacking_cv", "kind": "ensemble", "accuracy": 0.913},
        {**base, "model": "lite0+lite2", "classifier": "stacking_in_sample", "kind": "ensemble", "accuracy": 0.95,
         "leak_free": False},
    ])
    line = summary_line(records)
    assert line == "best: stacking_cv 91.3% (+1.1 over lite2 + logreg)" and SUMMARY.match(line)
    assert summary_line(records[:2]) == "best: lite2 + logreg 90.2%"


def test_history_has_one_column_per_run(evaluated):
    root, runs, documents = evaluated
    table = history_table(root)
    assert list(table.columns) == sorted(run.name for run in runs)
    assert len(table) == len(documents[0]["results"])
    (logreg,) = table.xs((DATASET, "pixels", "logreg", "all"), level=HISTORY_KEYS[:4]).itertuples(index=False)
    expected = next(r for r in documents[0]["results"] if r["model"] == "pixels" and r["classifier"] == "logreg")
    assert list(logreg) == pytest.approx([round(100 * expected["accuracy"], 2)] * 2)
    assert load_run(root=root)["run_id"] == runs[-1].name


def test_history_keeps_learning_curve_runs_in_their_own_rows(evaluated, tmp_path):
    # records of runs written before records carried their own train_per_class: the run's parameter counts
    records = [{k: v for k, v in r.items() if k != "train_per_class"}
               for r in evaluated[2][0]["results"] if r["classifier"] == "knn"]
    for parameters in ({"seed": 0}, {"seed": 0, "train_per_class": 10}):
        write_report(new_run_dir(tmp_path), records, [], parameters)
    table = history_table(tmp_path)
    assert list(table.index.get_level_values("train_per_class").unique()) == [10, "all"]
    assert table.notna().sum(axis=1).tolist() == [1] * len(table)  # each row holds one run's number


def test_history_reads_a_learning_curve_in_numeric_order_and_files_a_cap_above_the_data_as_a_full_fit(
        evaluated, tmp_path, capsys):
    root = evaluated[0]
    documents = {}
    # written in an order whose text sort (10, 1000, 2, 5, all) is not the numeric one; digits has at
    # most 145 train+val images per class, so 1000 caps nothing
    for per_class in (10, 5, 1000, None, 2):
        record = evaluate_classifier(DATASET, "pixels", "knn", root=root, train_per_class=per_class)
        documents[per_class] = write_report(new_run_dir(tmp_path), [record], [],
                                            {"seed": 0, "train_per_class": per_class})
    assert documents[1000]["results"][0]["train_per_class"] is None  # a full fit ...
    assert documents[1000]["results"][0]["accuracy"] == documents[None]["results"][0]["accuracy"]  # ... selection too
    assert documents[1000]["results"][0]["n_fit"] == documents[None]["results"][0]["n_fit"]
    table = history_table(tmp_path)
    assert list(table.index.get_level_values("train_per_class")) == [2, 5, 10, "all"]
    assert table.notna().sum(axis=1).tolist() == [1, 1, 1, 2]  # the 1000 run sits in the full fits' row
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--history", "--root", str(tmp_path), "--json"])
    rows = json.loads(capsys.readouterr().out)
    # as results.json has them: ints (2, not 2.0), null for the full fits
    assert exit_.value.code == 0 and [repr(r["train_per_class"]) for r in rows] == ["2", "5", "10", "None"]
    with pytest.raises(SystemExit):
        main(["report", "--run", documents[1000]["run_id"], "--root", str(tmp_path)])
    out = " ".join(capsys.readouterr().out.split())
    assert f"note: {DATASET}: --train-per-class 1000 capped no class" in out and "filed under train_per_class 'all'" in out
    with pytest.raises(SystemExit):
        main(["report", "--run", documents[10]["run_id"], "--root", str(tmp_path)])
    assert "capped no class" not in capsys.readouterr().out


def test_history_keeps_results_of_other_stores_in_their_own_rows(evaluated, tmp_path):
    records = [r for r in evaluated[2][0]["results"] if r["classifier"] == "knn"]
    rebuilt = [dict(r, store_fingerprints={m: "0" * 64 for m in r["store_fingerprints"]}) for r in records]
    for run in (records, rebuilt):  # the same scores from other stores: a re-ingested dataset, other weights
        write_report(new_run_dir(tmp_path), run, [], {"seed": 0})
    table = history_table(tmp_path)
    assert len(table) == 2 * len(records)  # one row per result and inputs
    assert table.notna().sum(axis=1).tolist() == [1] * len(table)  # no row mixes the two


def test_in_sample_stacking_does_not_warn_that_it_reuses_the_fitted_base_models(evaluated):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = evaluate_stacking(DATASET, list(MODELS), root=evaluated[0], in_sample=True)
    assert "stacking_in_sample" in {r["classifier"] for r in records}
    assert not [w for w in caught if "enforces use_clones" in str(w.message)]


def test_soft_vote_reports_its_own_params_not_the_meta_classifier(evaluated):
    soft_vote = next(r for r in evaluated[2][0]["results"] if r["classifier"] == "soft_vote")
    assert set(soft_vote["params"]) == {"base", "vote"}


def test_no_runs_is_a_one_line_error(tmp_path):
    with pytest.raises(NoRuns) as error:
        load_run(root=tmp_path)
    assert "\n" not in str(error.value) and "featurestore evaluate" in str(error.value)


def test_history_of_a_dataset_without_runs_names_the_dataset(evaluated):
    with pytest.raises(NoRuns, match="no finished evaluation run of dataset 'nosuch' found"):
        history_table(evaluated[0], "nosuch")


def test_a_dataset_without_stores_is_called_unknown_not_unevaluated(evaluated, tmp_path):
    root = tmp_path / "root"
    write_digits_stores(root)
    with pytest.raises(NoRuns) as error:  # stores, no run yet: evaluate it
        load_run(root=root, dataset=DATASET)
    assert f"run `featurestore evaluate --dataset {DATASET}` first" in str(error.value)
    write_report(new_run_dir(root), evaluated[2][0]["results"], [], {"seed": 0})
    for find in (lambda: load_run(root=root, dataset="nosuch"), lambda: history_table(root, "nosuch")):
        with pytest.raises(NoRuns) as error:
            find()
        message = str(error.value)
        assert "\n" not in message
        assert "featurestore evaluate --dataset nosuch" not in message
        assert "no dataset 'nosuch' has stores under" in message and f"datasets with evaluation runs: {DATASET}" in message


def test_an_unknown_run_names_the_newest_finished_ones_not_evaluate(evaluated, tmp_path, capsys):
    # It said "run `featurestore evaluate` first" with finished runs there: a typo in --run is not a missing run.
    root = tmp_path / "root"
    write_digits_stores(root)
    runs = [new_run_dir(root) for _ in range(7)]
    for run in runs:
        write_report(run, evaluated[2][0]["results"], [], {"seed": 0})
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--run", "nosuch", "--root", str(root)])
    newest = ", ".join(run.name for run in runs[:1:-1])
    assert (exit_.value.code, capsys.readouterr().err) == (1, (
        f"error: {root / 'runs'}: no run 'nosuch' found; finished runs, newest first (the newest 5 of 7): {newest}; "
        "show one with `featurestore report --run RUN_ID`, or leave out --run for the latest\n"))
    with pytest.raises(NoRuns, match=f"no run 'nosuch' with results for dataset '{DATASET}' found; finished runs of "
                                     f"dataset '{DATASET}', newest first \\(the newest 5 of 7\\): {runs[-1].name}, "):
        load_run("nosuch", root, DATASET)


def test_an_unfinished_run_is_discarded_with_its_parts_and_a_finished_one_kept(evaluated, tmp_path):
    empty, with_part = new_run_dir(tmp_path), new_run_dir(tmp_path)
    save_records(part_path(with_part, DATASET, "pixels", "knn"), [{"accuracy": 1.0}])
    finished = evaluated[1][0]
    for run in (empty, with_part, finished):
        discard_unfinished(run)
    assert not empty.exists() and not with_part.exists() and (finished / "results.json").exists()
    # a task outliving its discarded run does not make the directory again
    with pytest.raises(FileNotFoundError):
        save_records(part_path(with_part, DATASET, "pixels", "logreg"), [{"accuracy": 1.0}])
    assert not with_part.exists()


def test_report_of_a_run_without_results_says_it_has_not_finished(tmp_path):
    running = new_run_dir(tmp_path)
    with pytest.raises(NoRuns, match=f"run '{running.name}' has not finished .*still running"):
        load_run(running.name, tmp_path)
    with pytest.raises(NoRuns, match="no run 'nosuch' found"):
        load_run("nosuch", tmp_path)


@pytest.fixture
def cli():
    app = typer.Typer()
    evaluate_commands.register(app)
    return app


def test_report_command_prints_latest_table_and_json(evaluated, cli):
    root, runs, documents = evaluated
    result = CliRunner().invoke(cli, ["report", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert documents[-1]["summary"][DATASET] in result.output and "stacking_cv" in result.output
    assert f"report: {runs[-1] / 'report.md'}" in result.output
    result = CliRunner().invoke(cli, ["report", "--root", str(root), "--json"])
    parsed = json.loads(result.output)
    assert parsed["run_id"] == runs[-1].name and len(parsed["results"]) == len(documents[-1]["results"])
    assert {r["classifier"]: r["params"] for r in parsed["results"]}["stacking_cv"]["cv_folds"] == 5
    # the whole results.json: the run's parameters, and each answer's row counts and store fingerprints
    assert parsed == json.loads((runs[-1] / "results.json").read_text()) and parsed["parameters"] == {"seed": 0}
    assert {"n_fit", "n_test", "n_failed_rows", "store_fingerprints"} <= set(parsed["results"][0])


def test_report_history_command(evaluated, cli):
    root, runs, _ = evaluated
    result = CliRunner().invoke(cli, ["report", "--history", "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["classifier"] for r in rows} >= {"logreg", "knn", "stacking_cv"}
    assert all(runs[0].name in r and runs[1].name in r for r in rows)
    table = CliRunner().invoke(cli, ["report", "--history", "--root", str(root)], terminal_width=120)
    assert table.exit_code == 0 and "pixels" in table.output and "stacking_cv" in table.output  # names whole
    started = [f"{r.name[4:6]}-{r.name[6:8]} {r.name[9:11]}:{r.name[11:13]}" for r in runs]
    assert all(s in table.output for s in started) or all(r.name in table.output for r in runs)


def test_report_refuses_run_with_history_in_one_line(evaluated, capsys):
    root, runs, _ = evaluated
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--run", runs[0].name, "--history", "--root", str(root)])
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and error.count("\n") == 1
    assert f"--run {runs[0].name} and --history cannot be combined" in error


def test_report_of_a_dataset_shows_its_latest_run_only(evaluated, tmp_path, capsys):
    records = evaluated[2][0]["results"]
    first = write_report(new_run_dir(tmp_path), records, [], {"seed": 0})
    other = [{**r, "dataset": "other"} for r in records]
    latest = write_report(new_run_dir(tmp_path), other, [{"dataset": DATASET, "model": "x", "reason": "why"}], {})
    for argv, shown, hidden in ((["--dataset", DATASET], first, latest), ([], latest, first),
                                (["--run", latest["run_id"], "-d", "other"], latest, first)):
        with pytest.raises(SystemExit) as exit_:
            main(["report", *argv, "--root", str(tmp_path)])
        out = capsys.readouterr().out
        assert exit_.value.code == 0 and f"run {shown['run_id']}" in out and hidden["run_id"] not in out
    assert f"{DATASET}:" not in out and "skipped" not in out  # the run's other dataset is left out
    for argv, wanted in ((["--dataset", "nosuch"], "no finished evaluation run of dataset 'nosuch' found"),
                         (["--run", first["run_id"], "-d", "other"],
                          f"no run '{first['run_id']}' with results for dataset 'other' found")):
        with pytest.raises(SystemExit) as exit_:
            main(["report", *argv, "--root", str(tmp_path)])
        error = capsys.readouterr().err
        assert exit_.value.code == 1 and error.count("\n") == 1 and wanted in error


@pytest.mark.parametrize("command", [["report"], ["report", "--history"], ["evaluate", "-d", DATASET]])
def test_a_root_that_does_not_exist_is_named_not_read_as_empty(tmp_path, capsys, command):
    missing = tmp_path / "nonexistent" / "x"
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--root", str(missing)])
    error = capsys.readouterr().err
    assert exit_.value.code == 1 and error.count("\n") == 1 and f"no featurestore root at {missing}" in error
    assert not missing.exists()


def test_help_everywhere(cli):
    for command in ("report", "evaluate"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "--json" in result.output


def test_python_dash_m_featurestore_is_the_featurestore_command():
    checkout = Path(__file__).resolve().parents[1]
    ran = subprocess.run([sys.executable, "-m", "featurestore", "--help"], capture_output=True, text=True, cwd=checkout,
                         env=dict(os.environ, PYTHONPATH=str(checkout)), timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "Usage: featurestore [OPTIONS] COMMAND" in ran.stdout and "evaluate" in ran.stdout and "extract" in ran.stdout


def _drawn_panels(records, path, monkeypatch, **options):
    """What ``accuracy_figure`` drew on each panel: (title, x tick labels, bold numbers, other numbers)."""
    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda figure, *args, **kwargs: figures.append(figure))
    plots.accuracy_figure(records, path, **options)
    return [(ax.get_title(), [t.get_text() for t in ax.get_xticklabels()],
             sorted(t.get_text() for t in ax.texts if t.get_fontweight() == "bold"),
             sorted(t.get_text() for t in ax.texts if t.get_fontweight() != "bold"))
            for ax in figures[0].axes]


def test_accuracy_picture_bolds_the_best_leak_free_answer_labels_the_leaky_one_and_names_the_cap(
        evaluated, tmp_path, monkeypatch):
    records = evaluated[2][0]["results"]  # a real run's answers, the in-sample stacking included
    best = 100 * best_record(records)["accuracy"]
    # the leaky stacking strictly highest: not bold; the best leak-free answer is
    boosted = [dict(r, accuracy=1.0) if not r["leak_free"] else r for r in records]
    ((title, columns, bold, plain),) = _drawn_panels(boosted, tmp_path / "a.png", monkeypatch)
    assert bold and set(bold) == {f"{best:.1f}"} and "100.0" in plain
    assert "stacking_in_sample\n(in-sample, leaky)" in columns and sum("leaky" in c for c in columns) == 1
    assert title == f"{DATASET}: test accuracy (%)"
    panel = plots.heat_map(records)
    leaky = panel.columns.index("stacking_in_sample\n(in-sample, leaky)")
    assert panel.bold.any() and (panel.values[panel.bold] == best).all() and not panel.bold[:, leaky].any()
    panel = plots.heat_map(boosted)
    assert np.nanmax(panel.values[:, leaky]) == 100.0 and not panel.bold[:, leaky].any()
    assert panel.bold.any() and (panel.values[panel.bold] == best).all()
    # a learning-curve run says what it was fitted on; a cap that capped nothing is a full fit
    point = [evaluate_classifier(DATASET, m, "knn", root=evaluated[0], train_per_class=5) for m in MODELS]
    ((title, _, _, _),) = _drawn_panels(point, tmp_path / "b.png", monkeypatch, train_per_class=5)
    assert title == f"{DATASET}: test accuracy (%), fit on at most 5 train+val images per class"
    assert plots.heat_map([dict(r, train_per_class=None) for r in point], 1000).title == f"{DATASET}: test accuracy (%)"


def test_a_damaged_results_json_is_skipped_with_a_one_line_warning(evaluated, tmp_path, capsys):
    # Before: one results.json without created_at broke `report` and `--history` for every run.
    root, document = tmp_path / "root", evaluated[2][0]
    good = new_run_dir(root)
    write_report(good, document["results"], [], {"seed": 0})
    damaged = {"nodate": '{"a": 1}', "list": "[1, 2]", "notjson": "{not json"}
    for name, text in damaged.items():
        (root / "runs" / name).mkdir()
        (root / "runs" / name / "results.json").write_text(text)
    for history in ([], ["--history", "--json"]):
        with pytest.raises(SystemExit) as exit_:
            main(["report", *history, "--root", str(root)])
        captured = capsys.readouterr()
        assert exit_.value.code == 0 and good.name in captured.out
        warned = captured.err.splitlines()
        assert len(warned) == 3 and all(line.startswith("warning: ") for line in warned)
        for name in damaged:
            path = root / "runs" / name
            assert any(line.startswith(f"warning: {path / 'results.json'}: damaged (")
                       and line.endswith(f"delete {path} or restore its results.json") for line in warned)
    # Before: "run 'notjson' has not finished ... wait for it, or delete the directory".
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--run", "notjson", "--root", str(root)])
    assert exit_.value.code == 1
    assert capsys.readouterr().err.startswith(f"error: {root / 'runs' / 'notjson' / 'results.json'}: damaged (not "
                                              "readable JSON")


@pytest.mark.parametrize("run", ["", ".."])
def test_report_refuses_a_run_id_that_names_no_run(evaluated, run, capsys):
    # Before: `--run ''` named the runs directory itself: "run '' has not finished".
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--run", run, "--root", str(evaluated[0])])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"error: invalid run name {run!r}: use up to 100 letters, digits and '_', '.', "
                                       "'+', '-' (starting with a letter or digit)\n")


def test_summary_and_picture_round_as_the_table_shows(tmp_path, monkeypatch):
    # Before: 1711 of 2000 test rows is 85.55 in the table, but "85.5%" in the summary and the picture
    # (the float 100 * 0.8555 is 85.549999...), and a gain of 1.65 points read "+1.6"
    base = {"dataset": "d", "leak_free": True}
    single = {**base, "model": "lite0", "classifier": "logreg", "kind": "single", "accuracy": 1711 / 2000}
    vote = {**base, "model": "lite0+lite1", "classifier": "soft_vote", "kind": "ensemble", "accuracy": 0.872,
            "members": ["lite0", "lite1"]}
    assert summary_line(add_gains([dict(single)])) == "best: lite0 + logreg 85.6%"
    assert summary_line(add_gains([dict(single), dict(vote)])) == "best: soft_vote 87.2% (+1.7 over lite0 + logreg)"
    ((_, _, bold, plain),) = _drawn_panels(add_gains([dict(single), dict(vote)]), tmp_path / "a.png", monkeypatch)
    assert bold == ["87.2"] and plain == ["85.6"]


def test_a_tie_is_bold_only_where_the_summary_names_it(evaluated, tmp_path, monkeypatch):
    # Before: a single and soft_vote tied at 73.4 were both bold; the summary named only the single
    records = [dict(r) for r in evaluated[2][0]["results"]]
    best = best_record(records)
    tied = next(r for r in records if r["classifier"] == "soft_vote")
    tied["accuracy"] = best["accuracy"]
    assert best_record(records) is best and summary_line(records).startswith(f"best: {best['model']} + ")
    panel = plots.heat_map(records)
    (cell,) = zip(*np.nonzero(panel.bold))
    assert cell == (panel.rows.index(best["model"]), panel.columns.index(best["classifier"]))
    ((_, _, bold, _),) = _drawn_panels(records, tmp_path / "a.png", monkeypatch)
    assert len(bold) == 1


def test_report_md_states_the_parameters_as_the_artifacts_do(evaluated, tmp_path):
    # Before: "datasets=['digits'], models=None, classifiers=[...], ..., train_per_class=None", a Python repr
    # that named no model for an evaluate run over every store
    parameters = {"datasets": [DATASET], "models": None, "classifiers": ["logreg", "knn"], "stacking": True,
                  "in_sample": True, "seed": 0, "workers": 2, "train_per_class": None}
    run = new_run_dir(tmp_path)
    document = write_report(run, evaluated[2][0]["results"], [], parameters)
    line = run_parameters_line(document)
    assert line == ("train_per_class=all; classifiers=logreg,knn; "
                    f"models={','.join(sorted(MODELS))}; stacking=yes; seed=0")
    assert f"Created {document['created_at']}; {line}.\n" in (run / "report.md").read_text()
