"""`featurestore backbones | extract | merge-shards`: the backbone registry and the extract step."""

from __future__ import annotations

import typer

from featurestore.cli.output import JSON_OPTION, ROOT_OPTION, print_json, print_table, split_names
from featurestore.errors import InvalidName
from featurestore.extract.reader import READERS
from featurestore.extract.runtimes import PRECISIONS, RUNTIMES, RuntimeSpec
from featurestore.registry import Registry, alternatives

BACKBONE_COLUMNS = ["name", "dim", "input", "interpolation", "layers", "weights", "offline"]
RESULT_COLUMNS = ["dataset", "model", "status", "rows", "written", "failed", "images_per_second", "runtime", "path"]
#: a merge copies rows and runs no model: no speed or runtime to show
MERGE_COLUMNS = [c for c in RESULT_COLUMNS if c not in ("images_per_second", "runtime")]


def backbones(as_json: bool = JSON_OPTION) -> None:
    """List the registered backbones: feature dim, input size, weights source, offline availability."""
    from featurestore.backbones import backbone_names, get_backbone

    rows = []
    for name in backbone_names():
        backbone = get_backbone(name)
        prep = backbone.preprocessing
        rows.append({
            "name": name, "dim": backbone.dim, "input": f"{prep.size}x{prep.size}", "resize": prep.resize,
            "interpolation": prep.interpolation, "layers": ",".join(backbone.layers),
            "weights": backbone.weights.description,
            "offline": backbone.weights.available_offline,
        })
    if as_json:
        print_json(rows)
    else:
        print_table([{**row, "offline": "yes" if row["offline"] else "no"} for row in rows], BACKBONE_COLUMNS,
                    title="backbones")


def _shard(text: str | None):
    from featurestore.extract import Shard

    if not text:
        return Shard()
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit()):
        raise InvalidName(f"--shard {text!r}: write INDEX/COUNT with 0 <= INDEX < COUNT, e.g. --shard 0/2")
    return Shard(int(index), int(count))


def _print_results(results, as_json: bool, columns: list[str] = RESULT_COLUMNS, title: str = "extract") -> None:
    rows = [r.as_dict() for r in results]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, columns, title=title)


def _choices(registry: Registry) -> str:
    """The names of ``registry``'s entries and, per device, the defaults among them (each spec's
    ``default_on``; the first that can serve the pass is taken), for an option's help."""
    defaults = "; ".join(" where it can, else ".join(name for name, spec in registry.items() if kind in spec.default_on)
                         + f" on {label}" for kind, label in (("cpu", "CPU"), ("cuda", "GPU")))
    return f"{alternatives(registry.names())} (default: {defaults})."


def _precision_help() -> str:
    """The precisions and what each runtime computes in, for ``--precision``'s help."""
    def computes(name: str, spec: RuntimeSpec) -> str:
        if len(spec.precisions) == 1:
            return f"{name} in {spec.precisions[0]} only"
        return (f"{name} computes in {alternatives(spec.precisions)} (default {spec.default_precision('cuda')} "
                f"on GPU, {spec.default_precision('cpu')} on CPU)")

    return f"{alternatives(PRECISIONS)}: {'; '.join(computes(name, spec) for name, spec in RUNTIMES.items())}."


#: what ``extract`` runs when neither ``--models`` nor ``--onnx-spec`` names a backbone
DEFAULT_MODEL = "efficientnet_lite0"


def _requested_models(models: list[str] | None, onnx_specs: list[str]) -> list[str]:
    """Register the ``--onnx-spec`` backbones, then return the requested model names: ``--models``,
    else the registered ONNX backbones (``extract --onnx-spec SPEC`` extracts that model), else the default."""
    from featurestore.backbones import register_onnx_spec

    registered = [register_onnx_spec(spec).name for spec in onnx_specs]
    return split_names(models, "--models") or registered or [DEFAULT_MODEL]


def extract(
    datasets: list[str] = typer.Option(..., "--dataset", "--datasets", "-d",
                                       help="Ingested dataset names, comma-separated or repeated."),
    models: list[str] = typer.Option(None, "--models", "--model", "-m", help="Backbones, comma-separated or repeated "
                                     f"(default: the --onnx-spec models, else {DEFAULT_MODEL})."),
    weights: list[str] = typer.Option([], "--weights", help="Weights file: FILE (one model) or MODEL=FILE."),
    onnx_spec: list[str] = typer.Option([], "--onnx-spec", help="JSON file describing an ONNX backbone to register."),
    layer: str = typer.Option(None, "--layer", help="Feature layer (default: the backbone's avgpool)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    runtime: str = typer.Option(None, "--runtime", help=_choices(RUNTIMES)),
    precision: str = typer.Option(None, "--precision", help=_precision_help()),
    batch_size: int = typer.Option(None, "--batch-size", help="Images per batch (default 32 on CPU, 256 on GPU)."),
    reader: str = typer.Option(None, "--reader", help=_choices(READERS)),
    workers: int = typer.Option(None, "--workers", help="Decoding threads or processes (default: up to 4 threads; cores - 2 processes; 2 threads for device-decode)."),
    threads: int = typer.Option(None, "--threads", help="Compute threads on CPU."),
    shard: str = typer.Option(None, "--shard", help="Extract only shard INDEX/COUNT (merge with merge-shards)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a complete store built from other inputs."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (images/s)."),
    root: str = ROOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run each backbone once over a dataset into its store; complete stores are skipped, partial ones resume."""
    from featurestore.extract import extract as run_extract
    from featurestore.extract.plan import parse_weights

    dataset_names = split_names(datasets, "--dataset")
    names = _requested_models(models, onnx_spec)
    results = [result for dataset in dataset_names
               for result in run_extract(dataset, names, root, device=device, runtime=runtime, precision=precision,
                                         batch_size=batch_size, reader=reader, workers=workers, threads=threads,
                                         weights=parse_weights(weights, names), layer=layer, shard=_shard(shard),
                                         overwrite=overwrite, progress=progress)]
    _print_results(results, as_json)


def merge_shards(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Ingested dataset name."),
    models: list[str] = typer.Option(..., "--models", "--model", "-m", help="Backbones, comma-separated or repeated."),
    count: int = typer.Option(..., "--count", help="Number of shards the rows were split into."),
    weights: list[str] = typer.Option([], "--weights", help="Weights file: FILE (one model) or MODEL=FILE."),
    onnx_spec: list[str] = typer.Option([], "--onnx-spec", help="JSON file describing an ONNX backbone to register."),
    layer: str = typer.Option(None, "--layer", help="Feature layer used at extraction."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a complete store built from other inputs."),
    root: str = ROOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Join the shard stores of each model (from `extract --shard i/n`) into one store."""
    from featurestore.extract import merge_shards as run_merge
    from featurestore.extract.plan import parse_weights

    names = _requested_models(models, onnx_spec)
    results = run_merge(dataset, names, count, root, weights=parse_weights(weights, names), layer=layer,
                        overwrite=overwrite)
    _print_results(results, as_json, MERGE_COLUMNS, title="merge-shards")


def register(app: typer.Typer) -> None:
    """Add the backbone and extract commands to the CLI."""
    app.command("backbones")(backbones)
    app.command("extract")(extract)
    app.command("merge-shards")(merge_shards)
