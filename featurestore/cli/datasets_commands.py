"""`featurestore datasets | ingest`: the dataset registry and the ingest flow."""

from __future__ import annotations

import typer

from featurestore.cli.output import JSON_OPTION, ROOT_OPTION, human_bytes, print_json, print_table
from featurestore.cli.prefect_api import check_prefect_api
from featurestore.datasets.errors import InvalidIngestOption
from featurestore.datasets.manifest import current_manifest_hash, ingested_names
from featurestore.datasets.registry import dataset_names, get_dataset
from featurestore.ingest.listing import describe, describe_ingested
from featurestore.ingest.request import check_request
from featurestore.ingest.split import DEFAULT_FOLDS, DEFAULT_RATIOS
from featurestore.paths import existing_root, resolve_root

DATASET_COLUMNS = ["name", "images", "ingested", "classes", "size", "licence", "official split"]


def datasets(root: str = ROOT_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List the registered datasets, whether each is ingested under the root, and those of your own.

    Yours are the datasets ingested there under a name of your own (`ingest imagefolder --name`)."""
    if resolve_root(root).exists():
        existing_root(root)  # a file is no root; one not made yet still lists what can be ingested
    registered = dataset_names()
    rows = [_registered_row(name, root) for name in registered]
    rows += [describe_ingested(name, root) for name in ingested_names(root) if name not in registered]
    if as_json:
        print_json(rows)
        return
    print_table(
        [dict(row, size=human_bytes(row["size"]) if row["size"] else None,
              **{"official split": "yes" if row["official_split"] else "no",
                 "ingested": row["ingested"] if row["present"] else "no"}) for row in rows],
        DATASET_COLUMNS, title="datasets",
    )
    for row in rows:
        if row.get("problem"):  # the table says only "damaged"; this says why and what to run
            typer.echo(f"warning: {row['problem']}", err=True)


def _registered_row(name: str, root: str | None) -> dict:
    """``describe``'s row of a registered dataset; one published without counts (``imagefolder``,
    ingested without ``--name``) takes its images and classes from its ``dataset.json``, as a
    dataset ingested under a name of the user's does, instead of showing them empty."""
    row = describe(get_dataset(name), root)
    if row["images"] is None and row["present"] and not row.get("problem"):
        ingested = describe_ingested(name, root)
        row = dict(row, images=ingested["images"], classes=ingested["classes"])
    return row


def _ratios(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise InvalidIngestOption(f"--ratios {text!r} is not three numbers: give train,val,test such as "
                                  "0.7,0.15,0.15") from None


def ingest(
    dataset: str = typer.Argument(..., help="Registered dataset name (see `featurestore datasets`)."),
    root: str = ROOT_OPTION,
    ratios: str = typer.Option(",".join(map(str, DEFAULT_RATIOS)), "--ratios",
                               help="train,val,test ratios where the dataset has no official split."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the folds and the per-class limit."),
    limit_per_class: int = typer.Option(None, "--limit-per-class", help="At most this many images per class (per class and split where the dataset has an official split); 0 or none for every image, as `run` takes it."),
    folds: int = typer.Option(DEFAULT_FOLDS, "--folds", help="Cross-validation folds over the training rows."),
    mirror: str = typer.Option(None, "--mirror", envvar="FEATURESTORE_MIRROR",
                               help="Base URL replacing the canonical one: files are read at MIRROR/<dataset>/<file>."),
    source: str = typer.Option(None, "--source", help="imagefolder only: a folder, archive or URL, one sub-folder per class."),
    name: str = typer.Option(None, "--name", help="imagefolder only: the name to store it under (default imagefolder)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the ingest flow: download once, verify every image, split, write the manifest."""
    from flows.api import shared_api
    from flows.ingest import ingest as ingest_flow  # Prefect loads only when a flow runs

    # Bad names and options are reported before a flow run starts, without Prefect's failure log.
    split_ratios = _ratios(ratios)
    stored_as = check_request(dataset, name=name, source=source, ratios=split_ratios, limit_per_class=limit_per_class,
                              folds=folds)
    check_prefect_api()
    before = current_manifest_hash(stored_as, root)
    try:
        with shared_api():
            result = ingest_flow(dataset=dataset, root=root, ratios=split_ratios, seed=seed,
                                 limit_per_class=limit_per_class, mirror=mirror, source=source, name=name, folds=folds)
    except KeyboardInterrupt:
        # Prefect calls a run stopped by Ctrl-C "Crashed" whether or not its commit was made.
        after = current_manifest_hash(stored_as, root)
        if after == before:
            outcome = "it is as it was before this ingest"
        elif after is None:
            # Stopped between moving dataset.json and manifest.csv into place: neither pair is whole.
            outcome = f"its manifest is half replaced; run the ingest of {stored_as} again"
        else:
            outcome = f"its new manifest {after[:12]} was already in place"
        typer.echo(f"stopped: {stored_as}: {outcome}", err=True)
        raise
    if as_json:
        print_json(result)
    else:
        print_table([{"field": k, "value": v} for k, v in result.items()], ["field", "value"], title="ingest")


def register(app: typer.Typer) -> None:
    """Add the dataset commands to the CLI."""
    app.command("datasets")(datasets)
    app.command("ingest")(ingest)
