"""Prefect tasks of the evaluate flow: thin wrappers over ``featurestore.evaluation``.

Every task takes names, keys and paths and reads the stores it needs itself (once): no array
crosses a task boundary. The checks return why a store or ensemble cannot be evaluated (or
``None``), or raise; the fitting tasks save their records under ``<run>/parts/`` and return that
file's path; ``report`` writes the run's report files and returns the path of its ``results.json``.
Results are never cached: a rerun recomputes from the stores, and the seed makes it repeat.
"""

from __future__ import annotations

from pathlib import Path

from prefect.cache_policies import NO_CACHE

from featurestore.evaluation import (
    evaluate_classifier,
    evaluate_early_fusion,
    evaluate_stacking,
    store_problem,
    write_report,
)
from featurestore.evaluation.data import check_rows
from featurestore.evaluation.parts import load_records, part_path, save_records
from featurestore.evaluation.runs import results_path
from featurestore.evaluation.stacking import BASE_CLASSIFIER, stacking_problem
from featurestore.evaluation.threads import limit_native_threads
from tasks.interrupts import task


@task(name="check-store", task_run_name="check {dataset}/{model}", cache_policy=NO_CACHE)
def check_store(dataset: str, model: str, root: str | None) -> str | None:
    """Why the store cannot be evaluated (missing, incomplete, fails verify), or ``None``."""
    return store_problem(dataset, model, root)


@task(name="check-rows", task_run_name="check rows of {dataset}", cache_policy=NO_CACHE)
def check_dataset_rows(dataset: str, models: list[str], root: str | None) -> None:
    """Fail early, before any fit, on disagreeing stores or classes train cannot learn."""
    check_rows(dataset, models, root)


@task(name="check-stacking", task_run_name="check stacking on {dataset}", cache_policy=NO_CACHE)
def check_stacking(dataset: str, models: list[str], root: str | None, train_per_class: int | None,
                   seed: int) -> str | None:
    """Why stacking over ``models`` cannot run on the rows it would fit (a class with one row), or ``None``."""
    return stacking_problem(dataset, models, root, train_per_class, seed)


@task(name="classifier", task_run_name="{classifier} on {dataset}/{model}", cache_policy=NO_CACHE)
def fit_classifier(dataset: str, model: str, classifier: str, root: str | None, seed: int, threads: int,
                   run_dir: str, train_per_class: int | None = None) -> str:
    """Select, refit and score one classifier on one store; return the part file's path."""
    limit_native_threads(threads)
    record = evaluate_classifier(dataset, model, classifier, root=root, seed=seed, n_jobs=threads,
                                 train_per_class=train_per_class)
    return save_records(part_path(run_dir, dataset, model, classifier), [record])


def _base_params(part_paths: list[str]) -> dict[str, dict]:
    """Chosen logistic-regression parameters per model, from finished single-classifier parts."""
    return {r["model"]: r["params"] for r in load_records(part_paths) if r["classifier"] == BASE_CLASSIFIER}


@task(name="stacking", task_run_name="stacking on {dataset}", cache_policy=NO_CACHE)
def stack(dataset: str, models: list[str], root: str | None, seed: int, threads: int, run_dir: str,
          logreg_parts: list[str], in_sample: bool, train_per_class: int | None = None) -> str:
    """Leak-free stacking (+ soft vote, + optional in-sample stacking) over ``models``.

    Reuses the C each backbone's logistic regression chose (``logreg_parts``) instead of tuning again.
    """
    limit_native_threads(threads)
    records = evaluate_stacking(dataset, models, root=root, seed=seed, n_jobs=threads,
                                base_params=_base_params(logreg_parts), in_sample=in_sample,
                                train_per_class=train_per_class)
    return save_records(part_path(run_dir, dataset, "+".join(models), "stacking"), records)


@task(name="early-fusion", task_run_name="early fusion on {dataset}", cache_policy=NO_CACHE)
def early_fusion(dataset: str, models: list[str], root: str | None, seed: int, threads: int, run_dir: str,
                 train_per_class: int | None = None) -> str:
    """Logistic regression on the concatenated features of ``models``."""
    limit_native_threads(threads)
    record = evaluate_early_fusion(dataset, models, root=root, seed=seed, n_jobs=threads,
                                   train_per_class=train_per_class)
    return save_records(part_path(run_dir, dataset, "+".join(models), "early_fusion"), [record])


@task(name="write-report", cache_policy=NO_CACHE)
def report(run_dir: str, part_paths: list[str], skipped: list[dict], parameters: dict) -> str:
    """Write the run's report files; return the path of ``results.json``."""
    write_report(Path(run_dir), load_records(part_paths), skipped, parameters)
    return str(results_path(run_dir))
