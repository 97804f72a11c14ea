"""`featurestore run`: the whole feature pipeline, locally, with no server to start."""

from __future__ import annotations

from pathlib import Path

import typer

from featurestore.cli.output import ROOT_OPTION, split_names
from featurestore.cli.prefect_api import check_prefect_api

#: `make run`'s embedded default: real Fashion-MNIST, the three offline backbones, a quick subset
DEFAULT_LIMIT_PER_CLASS = 100


def run(
    datasets: list[str] = typer.Option(None, "--datasets", "--dataset", "-d", help="Dataset names (repeat or comma-separate): registered ones, or yours from `ingest imagefolder --name`, ingested again from their recorded source. Default: fashion-mnist."),
    models: list[str] = typer.Option(None, "--models", "--model", "-m", help="Backbone names. Default: efficientnet_lite0,1,2."),
    classifiers: list[str] = typer.Option(None, "--classifiers", "--classifier", "-c", help="Classifier names. Default: all."),
    stacking: bool = typer.Option(True, "--stacking/--no-stacking", help="Add the stacking ensembles."),
    root: str = ROOT_OPTION,
    limit_per_class: int = typer.Option(DEFAULT_LIMIT_PER_CLASS, "--limit-per-class",
                                        help="Images per class and split of a registered dataset, for a quick run; 0 for every image (yours keep the limit they were ingested with)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, subsets and every classifier (same seed, same numbers)."),
    task_runner: str = typer.Option("threads", "--task-runner", help="threads, processes or dask."),
    workers: int = typer.Option(2, "--workers", help="Tasks run at once."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    mirror: str = typer.Option(None, "--mirror", envvar="FEATURESTORE_MIRROR", help="Base URL replacing the download sites."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Also replace stores built from other weights, layer "
                                   "or preprocessing (stores of an earlier manifest are always rebuilt)."),
) -> None:
    """Run the feature pipeline (ingest -> extract -> evaluate) and print the accuracy table."""
    from featurestore.pipeline import check_request
    from flows.runners import runner_checked_once

    datasets, models = split_names(datasets, "--datasets"), split_names(models, "--models")
    classifiers = split_names(classifiers, "--classifiers")
    # Said before a flow run starts (and its temporary server), as the other commands do: a bad
    # name, --device, --limit-per-class, --workers or Dask scheduler (the flows build their runners later).
    check_request(datasets, models, classifiers, root, seed=seed, limit_per_class=limit_per_class or None,
                  mirror=mirror, device=device)
    with runner_checked_once(task_runner, workers):
        check_prefect_api()
        from featurestore.cli.evaluate_commands import damaged_runs_said, print_run
        from featurestore.evaluation.history import load_run
        from flows.pipeline import DEFAULT_DATASETS, DEFAULT_MODELS, run_pipeline  # Prefect loads only when a flow runs

        result = run_pipeline(
            datasets=datasets or DEFAULT_DATASETS, models=models or DEFAULT_MODELS,
            classifiers=classifiers or None, stacking=stacking, root=root, limit_per_class=limit_per_class or None,
            seed=seed, task_runner=task_runner, workers=workers, device=device, mirror=mirror, overwrite=overwrite,
        )
    with damaged_runs_said():
        print_run(load_run(Path(result["run_dir"]).name, root), as_json=False, root=root)
    typer.echo(f"recomputed {result['recomputed']}")


def register(app: typer.Typer) -> None:
    """Add the pipeline command to the CLI."""
    app.command("run")(run)
