"""The ``feature-pipeline`` flow: ingest -> extract -> evaluate for datasets and backbones.

Run it locally as ``python -m flows.pipeline`` (or ``featurestore run``), or deployed with
``prefect deployment run 'feature-pipeline/nightly'`` (see ``prefect.yaml``). A rerun whose
inputs did not change reuses every manifest and store and recomputes only the report.
"""

from __future__ import annotations

from prefect import flow

from featurestore.datasets.manifest import current_manifest_hash
from featurestore.evaluation.runs import read_results
from featurestore.paths import check_root
from featurestore.pipeline import check_request
from flows.api import shared_api
from flows.evaluate import evaluate, print_summary
from flows.extract import extract
from flows.ingest import ingest
from flows.params import check_given
from flows.runners import runner_checked_once
from flows.stopping import ctrl_c_stops_tasks

DEFAULT_DATASETS = ["fashion-mnist"]
DEFAULT_MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@flow(name="feature-pipeline", log_prints=True)
def feature_pipeline(
    datasets: list[str] = DEFAULT_DATASETS,
    models: list[str] = DEFAULT_MODELS,
    classifiers: list[str] | None = None,
    stacking: bool = True,
    root: str | None = None,
    limit_per_class: int | None = None,
    seed: int = 0,
    task_runner: str = "threads",
    workers: int = 2,
    device: str = "auto",
    mirror: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Ingest every dataset, extract every model over it, evaluate every classifier and stacking.

    ``datasets`` are registered datasets or ones ingested under a name of yours (``ingest
    imagefolder --name``); these are ingested again as their ``dataset.json`` recorded (same
    source, ratios, seed, limit), which takes in the images added to the source since.
    ``limit_per_class`` takes a reproducible subset of a registered dataset for quick runs;
    ``task_runner`` (threads, processes, dask) runs the extract and evaluate fan-outs; ``workers``
    tasks run at once.
    The pipeline follows its data: a store built from an earlier manifest of its dataset (ingested
    again since, by this run or by hand) is rebuilt; ``overwrite`` also replaces stores built from
    other weights, layer or preprocessing. A store is replaced only once its new one is complete.
    Returns the run directory, the summary lines and what was recomputed.
    """
    check_given("datasets", datasets, "dataset", "--datasets")
    check_given("models", models, "model", "--models")
    check_given("classifiers", classifiers, "classifier", "--classifiers", "every classifier")
    ingests = check_request(datasets, models, classifiers, root, seed=seed, limit_per_class=limit_per_class,
                            mirror=mirror, device=device)
    # A bad runner fails before any ingest; the extract and evaluate runs inside rely on this one check.
    with runner_checked_once(task_runner, workers):
        root_path = str(check_root(root))
        unchanged_manifests = []
        for dataset in datasets:
            before = current_manifest_hash(dataset, root_path)
            result = ingest(root=root_path, **ingests[dataset])
            if before == result["manifest_hash"]:
                unchanged_manifests.append(dataset)
        stores = extract(datasets=list(datasets), models=list(models), root=root_path, device=device,
                         overwrite=overwrite, replace_stale=True, task_runner=task_runner, workers=workers)
        run_dir = evaluate(datasets=list(datasets), models=list(models), classifiers=classifiers, stacking=stacking,
                           seed=seed, root=root_path, task_runner=task_runner, workers=workers)
    extracted = [s for s in stores if s["status"] != "skipped"]
    if len(unchanged_manifests) == len(datasets) and not extracted:
        recomputed = "nothing but the report: every manifest and store was reused"
    else:
        recomputed = f"{len(datasets) - len(unchanged_manifests)} manifest(s), {len(extracted)} store(s) and the report"
    document = read_results(run_dir)
    print(f"recomputed {recomputed}")
    print_summary(run_dir, document)
    return {"run_dir": run_dir, "summary": document["summary"], "recomputed": recomputed, "stores": stores}


def run_pipeline(**parameters) -> dict:
    """Run the pipeline in this process, with one Prefect API for any worker processes."""
    with shared_api(), ctrl_c_stops_tasks():
        return feature_pipeline(**parameters)


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.pipeline [OPTIONS]`` is ``featurestore run [OPTIONS]``: one set of options for both."""
    from featurestore.cli import run_command

    run_command("run", argv, module="flows.pipeline")


if __name__ == "__main__":
    main()
