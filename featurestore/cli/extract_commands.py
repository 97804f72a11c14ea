"""`featurestore backbones | extract | merge-shards`: the backbone registry and the extract step;
`extract-flow`, hidden, is `python -m flows.extract`."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from featurestore.cli.output import JSON_OPTION, ROOT_OPTION, print_json, print_table, split_names
from featurestore.cli.prefect_api import check_prefect_api
from featurestore.errors import InvalidName
from featurestore.extract.reader import READERS
from featurestore.extract.runtimes import PRECISIONS, RUNTIMES, RuntimeSpec
from featurestore.extract.stop import STOP_LINE, clear_stop, request_stop, stop_requested
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


def _extract_request(datasets: list[str], models: list[str] | None, onnx_specs: list[str],
                     weights: list[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """The dataset names, model names (see ``_requested_models``) and ``{model: weights file}`` that
    ``extract`` and ``extract-flow`` were given, checked in the order they are typed."""
    from featurestore.extract.plan import parse_weights

    names = split_names(datasets, "--dataset")
    requested = _requested_models(models, onnx_specs)
    return names, requested, parse_weights(weights, requested)


# The options `extract` and `extract-flow` (`python -m flows.extract`) both take, in the same meaning;
# `--workers` is not among them: decoding workers in one process for `extract`, tasks at once for the flow.
Datasets = Annotated[list[str], typer.Option("--dataset", "--datasets", "-d",
                                             help="Ingested dataset names, comma-separated or repeated.")]
Models = Annotated[list[str], typer.Option("--models", "--model", "-m", help="Backbones, comma-separated or repeated "
                                           f"(default: the --onnx-spec models, else {DEFAULT_MODEL}).")]
Weights = Annotated[list[str], typer.Option("--weights", help="Weights file: FILE (one model) or MODEL=FILE.")]
OnnxSpecs = Annotated[list[str], typer.Option("--onnx-spec", help="JSON file describing an ONNX backbone to register.")]
Layer = Annotated[str, typer.Option("--layer", help="Feature layer (default: the backbone's avgpool).")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Runtime = Annotated[str, typer.Option("--runtime", help=_choices(RUNTIMES))]
Precision = Annotated[str, typer.Option("--precision", help=_precision_help())]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Images per batch (default 32 on CPU, 256 on GPU).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a complete store built from other inputs, "
                                         "once its new one is complete.")]


def extract(
    datasets: Datasets,
    models: Models = None,
    weights: Weights = [],
    onnx_spec: OnnxSpecs = [],
    layer: Layer = None,
    device: Device = "auto",
    runtime: Runtime = None,
    precision: Precision = None,
    batch_size: BatchSize = None,
    reader: str = typer.Option(None, "--reader", help=_choices(READERS)),
    workers: int = typer.Option(None, "--workers", help="Decoding threads or processes (default: up to 4 threads; cores - 2 processes; 2 threads for device-decode)."),
    threads: int = typer.Option(None, "--threads", help="Compute threads on CPU."),
    shard: str = typer.Option(None, "--shard", help="Extract only shard INDEX/COUNT (merge with merge-shards)."),
    overwrite: Overwrite = False,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (images/s)."),
    root: str = ROOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run each backbone once over a dataset into its store; complete stores are skipped, partial ones resume."""
    from featurestore.extract import extract as run_extract

    dataset_names, names, by_model = _extract_request(datasets, models, onnx_spec, weights)
    results = []
    for dataset in dataset_names:
        with _stop_said(dataset):
            results += run_extract(dataset, names, root, device=device, runtime=runtime, precision=precision,
                                   batch_size=batch_size, reader=reader, workers=workers, threads=threads,
                                   weights=by_model, layer=layer, shard=_shard(shard), overwrite=overwrite,
                                   progress=progress)
    _print_results(results, as_json)


@contextmanager
def _stop_said(dataset: str) -> Iterator[None]:
    """Extract ``dataset`` inside: a Ctrl-C prints one line per store saying what was kept (the
    stop's notes; else that nothing was written) and the command exits 130. The library's other
    warnings print as they are logged.

    The first Ctrl-C also ignores the next ones until the stores are released: a terminal or
    `timeout` can deliver a second SIGINT, which, raised while a store was closed, cut short the
    line saying what it kept. A background job (SIGINT ignored) is left as it is.
    """
    def first_stop(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        request_stop()
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is threading.main_thread() and previous is signal.default_int_handler:
        signal.signal(signal.SIGINT, first_stop)
    said = logging.StreamHandler(sys.stderr)
    said.setLevel(logging.WARNING)
    said.addFilter(lambda record: not getattr(record, STOP_LINE, False))  # printed below, from the notes
    library = logging.getLogger("featurestore")
    library.addHandler(said)
    clear_stop()
    try:
        yield
    except BaseException as error:
        # A Ctrl-C landing in a C extension's module init (onnxruntime's) comes out as an ImportError.
        if not (isinstance(error, KeyboardInterrupt) or stop_requested()):
            raise
        for line in getattr(error, "__notes__", None) or [f"stopped before extracting {dataset}; nothing was written"]:
            print(line, file=sys.stderr, flush=True)
        raise typer.Exit(130) from None
    finally:
        library.removeHandler(said)
        signal.signal(signal.SIGINT, previous)
        clear_stop()


def extract_flow(
    datasets: Datasets,
    models: Models = None,
    weights: Weights = [],
    onnx_spec: OnnxSpecs = [],
    layer: Layer = None,
    device: Device = "auto",
    runtime: Runtime = None,
    precision: Precision = None,
    batch_size: BatchSize = None,
    shards: int = typer.Option(1, "--shards", help="Split each dataset's rows into N tasks, merged at the end."),
    shard_index: int = typer.Option(None, "--shard-index", help="Run only this shard (0-based) of --shards; the run "
                                    "that completes the set merges it (one run per host or GPU)."),
    share_decode: bool = typer.Option(True, "--share-decode/--no-share-decode",
                                      help="One task per dataset decoding for every model, or one per model."),
    overwrite: Overwrite = False,
    replace_stale: bool = typer.Option(False, "--replace-stale", help="Replace a complete store built from an "
                                       "earlier manifest of its dataset (ingested again since), once its new one is "
                                       "complete; other inputs still need --overwrite."),
    task_runner: str = typer.Option("threads", "--task-runner", help="threads, processes or dask."),
    workers: int = typer.Option(1, "--workers", help="Tasks run at once (default 1: one device)."),
    root: str = ROOT_OPTION,
) -> None:
    """Run the extract flow (`python -m flows.extract`): one task per dataset and shard, its rows printed as JSON."""
    dataset_names, names, by_model = _extract_request(datasets, models, onnx_spec, weights)
    check_prefect_api()
    from flows.extract import run_extract  # Prefect loads only when a flow runs

    rows = run_extract(task_runner=task_runner, workers=workers, datasets=dataset_names, models=names, root=root,
                       device=device, runtime=runtime, precision=precision, batch_size=batch_size,
                       weights=by_model or None, layer=layer, shards=shards, shard_index=shard_index,
                       share_decode=share_decode, onnx_specs=onnx_spec or None, overwrite=overwrite,
                       replace_stale=replace_stale)
    print_json(rows)


def merge_shards(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Ingested dataset name."),
    models: list[str] = typer.Option(..., "--models", "--model", "-m", help="Backbones, comma-separated or repeated."),
    count: int = typer.Option(..., "--count", help="Number of shards the rows were split into."),
    weights: Weights = [],
    onnx_spec: OnnxSpecs = [],
    layer: str = typer.Option(None, "--layer", help="Feature layer used at extraction."),
    overwrite: Overwrite = False,
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
    # hidden: `python -m flows.extract` is how the flow is run (see flows/extract.py's main)
    app.command("extract-flow", hidden=True)(extract_flow)
    app.command("merge-shards")(merge_shards)
