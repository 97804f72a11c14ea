"""Evaluation on real stores (digits written with StoreWriter): metrics, stacking, bad input."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from mlxtend.classifier import StackingCVClassifier
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, top_k_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

import featurestore
from _evaluate_stores import DATASET, MODELS, digits_rows, write_digits_stores, write_store
from store_fixtures import write_manifest_of
from featurestore.classifiers import fit_classifier, get_classifier
from featurestore.errors import FeatureStoreError
from featurestore.evaluation import (
    ClassMissingFromTrain,
    SingleClassDataset,
    StoresDisagree,
    evaluate_classifier,
    evaluate_early_fusion,
    evaluate_stacking,
    load_eval_data,
    store_problem,
)
from featurestore.evaluation.data import check_rows, train_subset
from featurestore.evaluation.errors import NoTestRows, TooFewRowsToStack
from featurestore.evaluation.readiness import check_usable_test_rows
from featurestore.evaluation.stacking import STACKING_FOLDS, backbone_pipelines, stacking_problem
from featurestore.evaluation.threads import limit_native_threads
from featurestore.store import RowTable

limit_native_threads(1)


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits-root")
    write_digits_stores(root)
    return root


def _fit_rows(arrays):
    return np.isin(arrays.split, ["train", "val"]), arrays.split == "test"


@pytest.mark.parametrize("classifier", ["logreg", "knn"])
def test_metrics_agree_with_scikit_learn(digits_root, classifier):
    record = evaluate_classifier(DATASET, "pixels", classifier, root=digits_root, seed=0)
    arrays = featurestore.load_arrays(DATASET, "pixels", root=digits_root)
    fit, test = _fit_rows(arrays)
    spec = get_classifier(classifier)
    model = spec.build(record["params"], 0, 1, arrays.features[fit].shape).fit(arrays.features[fit], arrays.labels[fit])
    y_test, predicted = arrays.labels[test], model.predict(arrays.features[test])
    assert record["accuracy"] == pytest.approx(accuracy_score(y_test, predicted))
    assert record["macro_f1"] == pytest.approx(f1_score(y_test, predicted, average="macro"))
    assert record["top5_accuracy"] == pytest.approx(top_k_accuracy_score(y_test, model.predict_proba(arrays.features[test]), k=5))
    assert record["confusion_matrix"] == confusion_matrix(y_test, predicted).tolist()
    matrix = np.asarray(record["confusion_matrix"])
    assert list(record["per_class_accuracy"].values()) == pytest.approx(list(matrix.diagonal() / matrix.sum(axis=1)))
    assert record["n_fit"] == fit.sum() and record["n_test"] == test.sum()
    assert record["selection"]["method"] == "val" and record["fit_seconds"] >= 0
    assert record["store_fingerprints"] == {"pixels": arrays.fingerprint}


def test_linear_svm_has_no_top5(digits_root):
    record = evaluate_classifier(DATASET, "fourier", "linear_svm", root=digits_root)
    assert record["top5_accuracy"] is None and record["accuracy"] > 0.9


def test_reported_stacking_is_leak_free_stacking_cv(digits_root):
    base = {m: {"C": 0.1} for m in MODELS}
    records = {r["classifier"]: r for r in evaluate_stacking(DATASET, list(MODELS), root=digits_root, seed=0,
                                                             base_params=base, in_sample=True)}
    assert set(records) == {"stacking_cv", "soft_vote", "stacking_in_sample"}
    assert records["stacking_cv"]["leak_free"] and records["soft_vote"]["leak_free"]
    assert records["stacking_in_sample"]["leak_free"] is False
    # the reported number is exactly what mlxtend's StackingCVClassifier gives with out-of-fold probabilities
    data = load_eval_data(DATASET, MODELS, root=digits_root)
    X_fit, y_fit = data.part("train", "val")
    X_test, y_test = data.part("test")
    reference = StackingCVClassifier(
        classifiers=backbone_pipelines(data, base, 0, 1), meta_classifier=LinearSVC(dual=False, max_iter=5000, random_state=0),
        use_probas=True, cv=StratifiedKFold(STACKING_FOLDS, shuffle=True, random_state=0), random_state=0,
    ).fit(X_fit, y_fit)
    assert records["stacking_cv"]["accuracy"] == pytest.approx(accuracy_score(y_test, reference.predict(X_test)))
    assert set(records["stacking_cv"]["base_accuracy"]) == set(MODELS)
    assert records["stacking_cv"]["model"] == "+".join(MODELS)


def test_early_fusion_beats_chance_on_concatenated_features(digits_root):
    record = evaluate_early_fusion(DATASET, list(MODELS), root=digits_root)
    assert record["classifier"] == "early_fusion" and record["kind"] == "ensemble"
    assert record["accuracy"] > 0.95


def test_evaluation_is_reproducible_with_the_same_seed(digits_root):
    first, second = (evaluate_stacking(DATASET, list(MODELS), root=digits_root, seed=5) for _ in range(2))
    assert [r["confusion_matrix"] for r in first] == [r["confusion_matrix"] for r in second]
    assert [r["params"] for r in first] == [r["params"] for r in second]


def _fit_counts(data) -> list[int]:
    """Rows per class among the train+val rows of ``data``."""
    return np.bincount(data.y[np.isin(data.split, ["train", "val"])], minlength=10).tolist()


def test_train_per_class_caps_train_and_val_together_and_is_seeded(digits_root):
    full = load_eval_data(DATASET, MODELS, root=digits_root)
    few = load_eval_data(DATASET, MODELS, root=digits_root, train_per_class=5, seed=1)
    # digits has a val split (36 rows per class): it is drawn from with train, not added whole
    assert _fit_counts(few) == [5] * 10 and set(few.split[few.split != "test"]) == {"train", "val"}
    np.testing.assert_array_equal(few.ids[few.split == "test"], full.ids[full.split == "test"])
    again = load_eval_data(DATASET, MODELS, root=digits_root, train_per_class=5, seed=1)
    other = load_eval_data(DATASET, MODELS, root=digits_root, train_per_class=5, seed=2)
    np.testing.assert_array_equal(again.ids, few.ids)
    assert set(other.ids[other.split != "test"]) != set(few.ids[few.split != "test"])
    more = load_eval_data(DATASET, MODELS, root=digits_root, train_per_class=10, seed=1)
    assert set(few.ids) <= set(more.ids)  # a learning curve's larger N keeps the smaller N's rows
    # 0 is every row, as ingest's --limit-per-class 0 is every image: a full fit
    every = load_eval_data(DATASET, MODELS, root=digits_root, train_per_class=0, seed=1)
    np.testing.assert_array_equal(every.ids, full.ids)
    assert (every.train_per_class, every.select_within_fit) == (None, False)
    with pytest.raises(FeatureStoreError, match="--train-per-class -1 is invalid"):
        load_eval_data(DATASET, MODELS, root=digits_root, train_per_class=-1)


def test_train_per_class_final_fit_and_selection_see_only_the_drawn_rows(digits_root, monkeypatch):
    import featurestore.evaluation.single as single

    fitted = []

    def recording_fit(spec, params, X, y, **kwargs):
        fitted.append(np.bincount(y, minlength=10).tolist())
        return fit_classifier(spec, params, X, y, **kwargs)

    monkeypatch.setattr(single, "fit_classifier", recording_fit)
    record = evaluate_classifier(DATASET, "pixels", "logreg", root=digits_root, seed=1, train_per_class=5)
    assert fitted == [[5] * 10] and record["n_fit"] == 50 and record["n_test"] == 360
    # chosen by CV within those 50 rows, not on the val split's 360
    selection = record["selection"]
    assert selection["method"] == "cv" and selection["fit_rows"] + selection["score_rows"] <= 50
    ensembles = evaluate_stacking(DATASET, list(MODELS), root=digits_root, seed=1, train_per_class=5)
    ensembles.append(evaluate_early_fusion(DATASET, list(MODELS), root=digits_root, seed=1, train_per_class=5))
    assert [r["n_fit"] for r in ensembles] == [50] * 3
    assert ensembles[-1]["selection"]["method"] == "cv"


def test_train_per_class_draws_among_usable_rows(tmp_path):
    pixels, rows = digits_rows()
    fit = np.isin(rows.split, ["train", "val"])
    drawn = train_subset(rows.ids, rows.labels, rows.split, 5, 0) & fit
    failed = np.zeros(len(rows), bool)
    failed[np.flatnonzero(drawn & (rows.labels == 0))[:3]] = True  # 3 of the 5 rows class 0 would get
    write_store(tmp_path, "pixels", pixels, rows, failed=failed)
    data = load_eval_data(DATASET, ["pixels"], tmp_path, train_per_class=5)
    assert _fit_counts(data) == [5] * 10 and not set(rows.ids[failed]) & set(data.ids)
    assert evaluate_classifier(DATASET, "pixels", "knn", root=tmp_path, train_per_class=5)["n_fit"] == 50


def test_incomplete_and_unverifiable_stores_are_reported_not_evaluated(tmp_path):
    pixels, rows = digits_rows()
    write_store(tmp_path, "pixels", pixels, rows, finalize=False)
    problem = store_problem(DATASET, "pixels", tmp_path)
    assert "interrupted" in problem and "\n" not in problem
    bad = pixels.copy()
    bad[3, 5] = np.nan
    write_store(tmp_path, "broken", bad, rows)
    problem = store_problem(DATASET, "broken", tmp_path)
    assert "fails verify" in problem and "NaN" in problem and "\n" not in problem
    assert "no store" in store_problem(DATASET, "absent", tmp_path)


def test_a_damaged_store_is_skipped_for_one_reason_naming_its_path_once(tmp_path):
    from test_store import garble_provenance_attribute

    write_digits_stores(tmp_path)
    path = featurestore.store.store_path(DATASET, "pixels", tmp_path)
    garble_provenance_attribute(path)
    problem = store_problem(DATASET, "pixels", tmp_path)
    assert problem == (f"{path}: its provenance attribute is not readable JSON (Expecting value: line 1 column 1 (char 0)); "
                       f"delete it with `featurestore rm {DATASET} pixels --root {tmp_path}` and extract again")
    bad = digits_rows()[0].copy()
    bad[3, 5] = np.nan
    write_store(tmp_path, "nan", bad, digits_rows()[1])
    problem = store_problem(DATASET, "nan", tmp_path)
    assert problem.count(str(path.parent)) == 1 and problem.count("extract") == 1 and "NaN" in problem


def test_damage_read_after_the_header_is_a_store_problem_not_a_traceback(tmp_path):
    import h5py

    from featurestore.errors import StoreCorrupt
    from featurestore.evaluation.data import read_store_rows
    from featurestore.store.format import ROW_STATUS

    write_digits_stores(tmp_path, models=["pixels"])
    path = featurestore.store.store_path(DATASET, "pixels", tmp_path)
    # the header check passes (the row flags are there), but their data lives in a file that is gone
    with h5py.File(path, "r+") as file:
        rows = file[ROW_STATUS].shape[0]
        del file[ROW_STATUS]
        file.create_dataset(ROW_STATUS, shape=(rows,), dtype="i1", external=[(str(tmp_path / "gone.bin"), 0, rows)])
    with pytest.raises(StoreCorrupt, match=f"^{re.escape(str(path))}: its HDF5 internals are damaged") as error:
        read_store_rows(DATASET, "pixels", tmp_path)
    assert "featurestore rm digits pixels" in _one_line(error)
    check_usable_test_rows(DATASET, ["pixels"], tmp_path)  # left to store_problem, which skips the store
    assert store_problem(DATASET, "pixels", tmp_path) == str(error.value)


def test_a_store_built_from_an_earlier_manifest_is_not_scored(tmp_path):
    pixels, rows = digits_rows()
    write_store(tmp_path, "pixels", pixels, rows)
    assert store_problem(DATASET, "pixels", tmp_path) is None  # stores copied without their dataset
    write_manifest_of(tmp_path, rows, DATASET)  # the dataset was ingested again: split and labels may differ
    problem = store_problem(DATASET, "pixels", tmp_path)
    assert (f"built from an earlier manifest of {DATASET!r} (ingested again since); "
            f"rebuild it with `featurestore extract -d {DATASET} -m pixels --overwrite --root {tmp_path}`") in problem


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, FeatureStoreError) and "\n" not in message
    return message


def test_class_missing_from_train_is_named(tmp_path):
    pixels, rows = digits_rows()
    split = rows.split.copy()
    split[(rows.labels == 7) & (split == "train")] = "val"
    order = np.argsort([("train", "val", "test").index(s) for s in split], kind="stable")
    moved = RowTable(ids=rows.ids[order], labels=rows.labels[order], class_names=rows.class_names,
                     split=split[order], fold=np.where(split[order] == "train", rows.fold[order], -1))
    write_store(tmp_path, "pixels", pixels[order], moved)
    with pytest.raises(ClassMissingFromTrain) as error:
        check_rows(DATASET, ["pixels"], tmp_path)
    assert "'7'" in _one_line(error) and DATASET in str(error.value)
    with pytest.raises(ClassMissingFromTrain):
        evaluate_classifier(DATASET, "pixels", "knn", root=tmp_path)


def test_a_class_without_rows_is_scored_as_never_predicted(tmp_path):
    # e.g. every image of the class failed to decode at extraction
    pixels, rows = digits_rows()
    keep = rows.labels != 9
    table = RowTable(ids=rows.ids[keep], labels=rows.labels[keep], class_names=rows.class_names,
                     split=rows.split[keep], fold=rows.fold[keep])
    write_store(tmp_path, "pixels", pixels[keep], table)
    record = evaluate_classifier(DATASET, "pixels", "logreg", root=tmp_path)
    assert record["per_class_accuracy"]["9"] is None and record["top5_accuracy"] > 0.9
    assert np.asarray(record["confusion_matrix"]).shape == (10, 10)


def test_single_class_dataset_is_refused(tmp_path):
    pixels, rows = digits_rows()
    keep = rows.labels == 3
    single = RowTable(ids=rows.ids[keep], labels=np.zeros(keep.sum(), int), class_names=["three"],
                      split=rows.split[keep], fold=rows.fold[keep])
    write_store(tmp_path, "pixels", pixels[keep], single)
    with pytest.raises(SingleClassDataset) as error:
        evaluate_classifier(DATASET, "pixels", "logreg", root=tmp_path)
    assert "three" in _one_line(error) and "at least two" in str(error.value)


def test_stores_that_disagree_on_split_are_named(tmp_path):
    pixels, rows = digits_rows()
    write_store(tmp_path, "pixels", pixels, rows)
    other_split = rows.split.copy()
    other_split[0] = "val"
    changed = RowTable(ids=rows.ids, labels=rows.labels, class_names=rows.class_names, split=other_split, fold=rows.fold)
    write_store(tmp_path, "fourier", pixels, changed)
    with pytest.raises(StoresDisagree) as error:
        check_rows(DATASET, ["pixels", "fourier"], tmp_path)
    message = _one_line(error)
    assert "split" in message and "pixels" in message and "fourier" in message and rows.ids[0] in message
    with pytest.raises(StoresDisagree):
        evaluate_stacking(DATASET, ["pixels", "fourier"], root=tmp_path)


def test_failed_rows_are_left_out_of_every_model(tmp_path):
    pixels, rows = digits_rows()
    failed = np.zeros(len(rows), bool)
    failed[[0, len(rows) - 1]] = True
    write_store(tmp_path, "pixels", pixels, rows, failed=failed)
    write_store(tmp_path, "fourier", pixels, rows)
    data = load_eval_data(DATASET, ["pixels", "fourier"], tmp_path)
    assert data.n_failed == 2 and len(data.y) == len(rows) - 2
    assert rows.ids[0] not in data.ids and data.X.shape[1] == 64 + 128


def test_macro_f1_averages_only_the_classes_with_test_rows(tmp_path):
    # e.g. a small class whose few images all went to train: it has no F1 on test to average
    pixels, rows = digits_rows()
    keep = ~((rows.labels == 9) & (rows.split == "test"))
    table = RowTable(ids=rows.ids[keep], labels=rows.labels[keep], class_names=rows.class_names,
                     split=rows.split[keep], fold=rows.fold[keep])
    write_store(tmp_path, "pixels", pixels[keep], table)
    record = evaluate_classifier(DATASET, "pixels", "logreg", root=tmp_path)
    matrix = np.asarray(record["confusion_matrix"])
    precision = matrix.diagonal() / np.maximum(matrix.sum(axis=0), 1)
    recall = matrix.diagonal()[:9] / matrix.sum(axis=1)[:9]
    f1 = 2 * precision[:9] * recall / np.maximum(precision[:9] + recall, 1e-12)
    assert record["per_class_accuracy"]["9"] is None
    assert record["macro_f1"] == pytest.approx(f1.mean()) and record["macro_f1"] > 0.9


def _tiny_store(root, per_split: dict[str, tuple[int, int]], models=("pixels",)) -> None:
    """Digits 0 and 1 only, with the given (zeros, ones) row counts per split, the dataset's own folds."""
    pixels, rows = digits_rows()
    chosen = sorted(i for split, counts in per_split.items() for label, n in enumerate(counts)
                    for i in np.flatnonzero((rows.split == split) & (rows.labels == label))[:n])
    table = RowTable(ids=rows.ids[chosen], labels=rows.labels[chosen], class_names=rows.class_names[:2],
                     split=rows.split[chosen], fold=rows.fold[chosen])
    for model in models:
        write_store(root, model, pixels[chosen], table)


@pytest.mark.parametrize("classifier", ["logreg", "linear_svm", "lightgbm", "knn"])
def test_a_train_split_smaller_than_the_grid_still_evaluates(tmp_path, classifier):
    # 7 train rows, no val: kNN's k=20 exceeds the rows, and the CV folds are tiny
    _tiny_store(tmp_path, {"train": (3, 4), "test": (1, 1)}, MODELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor any scikit-learn warning about the small classes
        runs = [evaluate_classifier(DATASET, "pixels", classifier, root=tmp_path, seed=3) for _ in range(2)]
    assert runs[0]["n_fit"] == 7 and runs[0]["n_test"] == 2
    assert [(r["params"], r["accuracy"]) for r in runs] == [(runs[1]["params"], runs[1]["accuracy"])] * 2
    if classifier == "knn":
        assert [s["params"]["k"] for s in runs[0]["selection"]["scores"]] == [20, 10, 5]


@pytest.mark.parametrize("classifier, used", [("knn", {"k": 3}), ("lightgbm", {"pca": None, "min_child_samples": 1})])
def test_a_record_shows_the_parameters_its_fit_used_not_the_grids(tmp_path, classifier, used):
    # 3 train rows: kNN's k clipped from 5 to 3, and no PCA to 32 components on 3 rows
    _tiny_store(tmp_path, {"train": (1, 2), "test": (1, 1)})
    record = evaluate_classifier(DATASET, "pixels", classifier, root=tmp_path)
    assert record["n_fit"] == 3 and used.items() <= record["params"].items()


def test_lightgbm_learns_from_a_small_fit_instead_of_predicting_one_class(digits_root):
    # 3 digits per class, 30 fit rows: with LightGBM's default min_child_samples=20 no tree could
    # split, every test image got the same class and the record showed chance (0.097) as a result
    record = evaluate_classifier(DATASET, "pixels", "lightgbm", root=digits_root, train_per_class=3)
    predicted_classes = np.count_nonzero(np.asarray(record["confusion_matrix"]).sum(axis=0))
    assert record["accuracy"] > 0.4 and predicted_classes == 10  # chance is 0.1
    assert record["n_fit"] == 30 and record["params"]["min_child_samples"] == 3
    # the CV candidates ran on fewer rows still, and say so
    assert all(score["used"]["min_child_samples"] < 3 for score in record["selection"]["scores"])


def test_selection_scores_show_the_k_each_candidate_ran_with(tmp_path):
    _tiny_store(tmp_path, {"train": (4, 4), "val": (2, 2), "test": (1, 1)})  # 8 fit rows: grid k 20, 10, 5
    record = evaluate_classifier(DATASET, "pixels", "knn", root=tmp_path)
    assert record["selection"]["method"] == "val"
    scores = record["selection"]["scores"]
    assert [s["params"]["k"] for s in scores] == [20, 10, 5] and [s.get("used") for s in scores] == [
        {"k": 8}, {"k": 8}, None]


@pytest.mark.parametrize("train, folds", [((3, 4), 3), ((2, 2), 2)])
def test_stacking_on_a_tiny_train_split_takes_fewer_folds(tmp_path, train, folds):
    # 2 rows per class is the least stacking takes: each fold's fit part still holds every class, so
    # scikit-learn has no "Number of classes in training fold" to warn about
    _tiny_store(tmp_path, {"train": train, "test": (1, 1)}, MODELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = evaluate_stacking(DATASET, list(MODELS), root=tmp_path)
    assert records[0]["params"]["cv_folds"] == folds


def test_stacking_with_a_one_row_class_is_refused_in_one_line(tmp_path):
    # one '0' in train+val: any fold holding it leaves its base models without that class
    _tiny_store(tmp_path, {"train": (1, 4), "val": (0, 1), "test": (1, 1)}, MODELS)
    reason = "stacking needs at least 2 train+val rows per class for its cross-validation; class '0' has 1"
    assert stacking_problem(DATASET, list(MODELS), tmp_path) == reason
    with pytest.raises(TooFewRowsToStack) as error:
        evaluate_stacking(DATASET, list(MODELS), root=tmp_path)
    assert reason in _one_line(error) and "--no-stacking" in str(error.value)
    assert evaluate_early_fusion(DATASET, list(MODELS), root=tmp_path)["n_fit"] == 6
    two = tmp_path / "two rows"
    _tiny_store(two, {"train": (2, 4), "test": (1, 1)}, MODELS)
    assert stacking_problem(DATASET, list(MODELS), two) is None
    assert stacking_problem(DATASET, list(MODELS), two, train_per_class=1).endswith("classes '0', '1' have 1")


@pytest.mark.parametrize("case", ["empty test split", "every test row failed"])
def test_no_usable_test_rows_is_refused_before_fitting(tmp_path, case):
    pixels, rows = digits_rows()
    test = rows.split == "test"
    if case == "empty test split":
        keep = ~test
        write_store(tmp_path, "pixels", pixels[keep], RowTable(ids=rows.ids[keep], labels=rows.labels[keep],
                    class_names=rows.class_names, split=rows.split[keep], fold=rows.fold[keep]))
    else:
        write_store(tmp_path, "pixels", pixels, rows, failed=test)
    if case == "empty test split":
        sizes = ", ".join(f"{d} {n}" for d, n in enumerate(np.bincount(rows.labels[keep])))
        says = (f"dataset {DATASET!r} has no test rows: its classes are too small for the ingest ratios to give "
                f"any of them a test image (images per class: {sizes}); add images, or raise the test share")
    else:
        says = (f"dataset {DATASET!r} has no usable test rows: all {test.sum()} test images failed to decode at "
                f"extraction ({', '.join(rows.ids[test][:3])}, ...); fix or replace those images")
    with pytest.raises(NoTestRows) as error:
        check_rows(DATASET, ["pixels"], tmp_path)
    assert says in _one_line(error)
    with pytest.raises(NoTestRows, match=re.escape(says)):
        evaluate_classifier(DATASET, "pixels", "logreg", root=tmp_path)
    with pytest.raises(NoTestRows, match=re.escape(says)):
        check_usable_test_rows(DATASET, ["pixels"], tmp_path)


def test_a_store_with_damaged_metadata_is_skipped_by_the_pre_checks_not_crashed_on(tmp_path):
    import subprocess
    import sys

    from test_store import flip_metadata_bytes

    write_digits_stores(tmp_path)
    flip_metadata_bytes(featurestore.store.store_path(DATASET, MODELS[0], tmp_path))
    # In a child: before the fix PyTables could take the whole process down (SIGSEGV) here.
    code = ("from featurestore.evaluation.readiness import check_usable_test_rows, store_problem; "
            f"check_usable_test_rows({DATASET!r}, {list(MODELS)!r}, {str(tmp_path)!r}); "
            f"print(store_problem({DATASET!r}, {MODELS[0]!r}, {str(tmp_path)!r}))")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert "its HDF5 internals are damaged" in child.stdout
