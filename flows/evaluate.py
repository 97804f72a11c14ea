"""The ``evaluate`` flow: every (dataset, model, classifier) answer plus stacking, in one report.

Run it as ``featurestore evaluate --dataset fashion-mnist [--models a,b] [--classifiers ...]``
(``python -m flows.evaluate`` takes the same options). Reports land in ``<root>/runs/<run-id>/``; the tables and
summaries are also published as Prefect artifacts with stable keys (``evaluate-<dataset>``,
``evaluate-<dataset>-summary``), so the UI shows their history across runs.
"""

from __future__ import annotations

import os
from concurrent.futures import CancelledError

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture

from featurestore.evaluation import check_request, table_rows
from featurestore.evaluation.readiness import nothing_usable, requested_models
from featurestore.evaluation.report import markdown_summary, run_parameters_line
from featurestore.evaluation.runs import discard_unfinished, new_run_dir, read_results, report_path
from featurestore.evaluation.stacking import BASE_CLASSIFIER
from featurestore.paths import check_root
from flows.api import shared_api
from flows.artifacts import artifact_key, name_part, run_kind_parts
from flows.params import check_given
from flows.runners import runner_checked_once, tasks_run_on
from tasks import evaluate as steps


def _publish(document: dict) -> None:
    """Publish the run's tables and summaries as Prefect artifacts, each saying what kind of run it
    is (``run_parameters_line``); a learning-curve run's keys carry ``-tpcN`` (``run_kind_parts``)."""
    rows = table_rows(document["results"])
    run_id, kind = document["run_id"], run_kind_parts(document)
    for dataset, line in document["summary"].items():
        about = run_parameters_line(document, dataset)
        create_table_artifact(
            key=artifact_key("evaluate", name_part(dataset), *kind),
            table=[r for r in rows if r["dataset"] == dataset],
            description=f"{dataset}: {line} (run {run_id}; {about})",
        )
        create_markdown_artifact(
            key=artifact_key("evaluate", name_part(dataset), *kind, "summary"),
            markdown=f"# {dataset}\n\n{line}\n\nRun `{run_id}`: {about}\n",
            description=f"{line} (run {run_id}; {about})",
        )
    about = run_parameters_line(document)
    create_markdown_artifact(key=artifact_key("evaluate", "report", *kind),
                             markdown=f"Run `{run_id}`: {about}\n\n{markdown_summary(document)}",
                             description=f"evaluate run {run_id} ({about})")


def _settle(futures: list[PrefectFuture]) -> None:
    """Cancel the submitted tasks that have not started and wait for the running ones to end,
    whatever their outcome, so none writes into a run directory after it is discarded."""
    for future in futures:
        queued = getattr(future, "wrapped_future", None)  # the executor's future, where there is one
        if queued is not None:
            queued.cancel()
    for future in futures:
        try:
            future.wait()
        except CancelledError:
            pass


@flow(name="evaluate", log_prints=True)
def evaluate(
    datasets: list[str],
    models: list[str] | None = None,
    classifiers: list[str] | None = None,
    stacking: bool = True,
    in_sample: bool = False,
    seed: int = 0,
    root: str | None = None,
    workers: int = 2,
    train_per_class: int | None = None,
    task_runner: str = "threads",
) -> str:
    """Fan classifiers and stacking out over the stores of ``datasets``; return the run directory.

    ``models`` defaults to every store of each dataset, ``classifiers`` to every registered one.
    ``stacking`` adds leak-free stacking, soft vote and early fusion over the usable models;
    ``in_sample`` also shows the leaky in-sample stacking, labelled as such. The tasks run on
    ``task_runner`` (threads, processes, dask), ``workers`` at once; native threads per task are
    the CPU count divided by ``workers``.
    ``train_per_class`` fits on at most that many train+val images per class (seeded; the
    hyper-parameters are chosen within them) and scores on the whole test split, for a learning
    curve without extracting again.
    """
    # `-p datasets=[]` ended "no store can be evaluated: " and no reason; `models=[]` evaluated every store
    check_given("datasets", datasets, "dataset", "--dataset")
    check_given("models", models, "model", "--models", "every store of the dataset")
    check_given("classifiers", classifiers, "classifier", "--classifiers", "every classifier")
    classifiers = check_request(classifiers, train_per_class)
    train_per_class = train_per_class or None  # 0 is every image: recorded as a full fit, as without the option
    root = str(check_root(root, create=False))  # here, not on each Dask worker's directory (see flows/extract.py)
    requested = {dataset: requested_models(dataset, models, root) for dataset in datasets}
    parameters = {"datasets": list(datasets), "models": models, "classifiers": classifiers, "stacking": stacking,
                  "in_sample": in_sample, "seed": seed, "workers": workers, "train_per_class": train_per_class}
    with tasks_run_on(task_runner, workers):
        run_dir = _fan_out(requested, parameters, root)
    document = read_results(run_dir)
    _publish(document)
    print_summary(run_dir, document)
    return run_dir


def print_summary(run_dir: str, document: dict) -> None:
    """Print each dataset's summary line of the run's results ``document``, then where its report is."""
    for dataset, line in document["summary"].items():
        print(f"{dataset}: {line}")
    print(f"report: {report_path(run_dir)}")


def _skipped(dataset: str, model: str, classifier: str | None, reason: str) -> dict:
    """One entry of the report's skipped list: ``model`` of ``dataset`` (only its ``classifier``,
    where one is named) is not evaluated, for ``reason``."""
    which = {"classifier": classifier} if classifier else {}
    return {"dataset": dataset, "model": model, **which, "reason": reason}


def _usable_stores(requested: dict[str, list[str]], root: str | None) -> tuple[dict[str, list[str]], list[dict]]:
    """Check every ``requested`` store in a task of its own; return the usable models of each dataset
    that has any, and a skipped entry per unusable store. Raise ``NothingToEvaluate`` where none is usable."""
    checks = {(d, m): steps.check_store.submit(d, m, root) for d, names in requested.items() for m in names}
    problems = {key: future.result() for key, future in checks.items()}
    skipped = [_skipped(d, m, None, problem) for (d, m), problem in problems.items() if problem]
    usable = {d: [m for m in names if not problems[d, m]] for d, names in requested.items()}
    # An empty report would become the latest run and hide the previous one.
    if not any(usable.values()):
        raise nothing_usable(s["reason"] for s in skipped)
    return {d: m for d, m in usable.items() if m}, skipped


def _check_rows(ready_datasets: dict[str, list[str]], stacking: bool, root: str | None) -> None:
    """Fail before any fit on stores of a dataset that disagree or classes train cannot learn."""
    for dataset, ready in ready_datasets.items():
        # stores are compared with each other only where they are combined
        for group in ([ready] if stacking else [[m] for m in ready]):
            steps.check_dataset_rows.submit(dataset, group, root).result()


def _submit_dataset(dataset: str, ready: list[str], parameters: dict, root: str | None, run_dir: str,
                    parts: list[PrefectFuture], skipped: list[dict]) -> None:
    """Submit every classifier and ensemble of ``parameters`` on the ``ready`` stores of ``dataset``.

    Futures go into ``parts`` as the tasks are submitted, not at the end, so that a failure part-way
    still settles the tasks already started; what is not run goes into ``skipped``.
    """
    classifiers, stacking, seed = parameters["classifiers"], parameters["stacking"], parameters["seed"]
    in_sample, train_per_class = parameters["in_sample"], parameters["train_per_class"]
    threads = max(1, (os.cpu_count() or 1) // parameters["workers"])
    # Logistic regression goes first: the ensembles reuse its chosen C, and they are the
    # longest tasks, so they should start early rather than last.
    logreg = [steps.fit_classifier.submit(dataset, m, BASE_CLASSIFIER, root, seed, threads, run_dir,
                                          train_per_class) for m in ready] if BASE_CLASSIFIER in classifiers else []
    parts.extend(logreg)
    if stacking and len(ready) > 1:
        # early fusion first: stacking blocks a worker until every logistic regression is done
        parts.append(steps.early_fusion.submit(dataset, ready, root, seed, threads, run_dir, train_per_class))
        problem = steps.check_stacking.submit(dataset, ready, root, train_per_class, seed).result()
        if problem:
            skipped.append(_skipped(dataset, "+".join(ready), "stacking",
                                    f"only stacking and its soft vote are skipped: {problem}"))
        else:
            parts.append(steps.stack.submit(dataset, ready, root, seed, threads, run_dir, logreg, in_sample,
                                            train_per_class))
    parts.extend(steps.fit_classifier.submit(dataset, m, c, root, seed, threads, run_dir, train_per_class)
                 for c in classifiers if c != BASE_CLASSIFIER for m in ready)
    if stacking and len(ready) < 2:
        # every ensemble combines stores, so all of them go, once for the dataset
        skipped.append(_skipped(dataset, ready[0], "ensembles",
                                f"stacking, soft_vote and early_fusion combine at least two usable stores "
                                f"of {dataset}; {ready[0]} is the only one: extract a second backbone "
                                f"(featurestore extract -d {dataset} -m NAME)"))


def _fan_out(requested: dict[str, list[str]], parameters: dict, root: str | None) -> str:
    """Check the ``requested`` stores, fit every classifier and ensemble of ``parameters`` on the
    usable ones and write the report; return the run directory."""
    ready_datasets, skipped = _usable_stores(requested, root)
    _check_rows(ready_datasets, parameters["stacking"], root)
    run_dir = str(new_run_dir(root))
    parts: list[PrefectFuture] = []
    try:
        for dataset, ready in ready_datasets.items():
            _submit_dataset(dataset, ready, parameters, root, run_dir, parts, skipped)
        written = steps.report.submit(run_dir, [f.result() for f in parts], skipped, parameters)
        parts.append(written)
        written.result()
    except BaseException:
        # A failed or stopped run (Ctrl-C) leaves nothing under runs/: its parts are no report, and
        # `report` and the history read finished runs only. Running tasks would still write parts.
        _settle(parts)
        discard_unfinished(run_dir)
        raise
    return run_dir


def run_evaluate(task_runner: str = "threads", workers: int = 2, **parameters) -> str:
    """Run the ``evaluate`` flow on the named task runner (threads, processes, dask), with one
    Prefect API for any worker processes; return the run directory."""
    with runner_checked_once(task_runner, workers), shared_api():  # a bad runner fails before the API starts
        return evaluate(task_runner=task_runner, workers=workers, **parameters)


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.evaluate [OPTIONS]`` is ``featurestore evaluate [OPTIONS]``: one set of options for both."""
    from featurestore.cli import run_command

    run_command("evaluate", argv, module="flows.evaluate")


if __name__ == "__main__":
    main()
