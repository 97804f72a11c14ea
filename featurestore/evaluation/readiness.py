"""Which stores can be evaluated: the ones that exist, are complete and pass ``verify``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from featurestore.datasets.manifest import current_manifest_hash
from featurestore.errors import FeatureStoreError
from featurestore.evaluation.data import check_test_rows, read_store_rows
from featurestore.evaluation.errors import NothingToEvaluate
from featurestore.paths import check_name, existing_root, stores_dir
from featurestore.store import locate, store_files, verify_file
from featurestore.store.h5io import corrupt, open_store
from featurestore.store.paths import names_of
from featurestore.store.reader import check_header
from featurestore.store.staleness import stale_reason
from featurestore.store.verify import VerifyReport


def dataset_models(dataset: str, root=None) -> list[str]:
    """Models with a store file (complete or not) for ``dataset``, sorted by name."""
    check_name("dataset", dataset)
    return sorted({model for named, model in map(names_of, store_files(root)) if named == dataset})


def requested_models(dataset: str, models: Sequence[str] | None, root=None) -> list[str]:
    """The models to evaluate on ``dataset``: ``models``, or every store of it if none are named.

    A dataset without any store, or a named model without one, is a typo or a missing extract:
    it fails here, in one line naming what does exist, before a report is started.
    """
    present = dataset_models(dataset, root)
    if not present:
        existing_root(root)  # a typo in --root must not read as a root without stores
        others = sorted({p.parent.name for p in store_files(root)})
        where = f"datasets with stores: {', '.join(others)}" if others else "it holds no stores yet"
        raise NothingToEvaluate(f"dataset {dataset!r} has no stores under {stores_dir(root)} ({where}); "
                                "check the name, or ingest and extract it first")
    missing = [m for m in models or [] if m not in present]
    if missing:
        raise NothingToEvaluate(
            f"dataset {dataset!r} has no store for {', '.join(map(repr, missing))} (its stores: {', '.join(present)}); "
            f"check the name, or run `featurestore extract -d {dataset} -m {','.join(missing)}` first"
        )
    return list(models or present)


def check_usable_test_rows(dataset: str, models: Sequence[str], root=None) -> None:
    """Raise ``NoTestRows`` before a run starts if a store of ``models`` has no usable test row;
    reads only the row tables. A store that cannot be read is left to ``store_problem``."""
    for model in models:
        try:
            table = read_store_rows(dataset, model, root)
        except FeatureStoreError:
            continue
        check_test_rows(dataset, table, table.failed)


def _built_from_another_manifest(dataset: str, path: Path, root) -> str | None:
    """Why a store built from another manifest than the dataset's current one is not scored (its
    split or labels may have moved since: it was ingested again), or ``None``."""
    with open_store(path) as file:
        reason = stale_reason(check_header(file, path), current_manifest_hash(dataset, root), path)
    return f"{path}: {reason}" if reason else None


def _verify_failure(report: VerifyReport) -> str:
    """One reason for a store failing verify: its path once, what is wrong, and one thing to do."""
    # An error verify caught already reads "<path>: <problem>; <what to do>"; wrapping it would repeat both.
    errors = [problem for problem in report.problems if problem.startswith(f"{report.path}: ")]
    if errors:
        return errors[0]
    return str(corrupt(report.path, f"fails verify ({'; '.join(report.problems)})"))


def header_problem(dataset: str, model: str, root=None) -> str | None:
    """Why the (dataset, model) store cannot be evaluated as far as its header tells (no store, an
    unfinished or held one, a damaged header, built from an earlier manifest), or ``None``; reads
    no row, unlike ``store_problem``, which also verifies the store."""
    try:
        return _built_from_another_manifest(dataset, locate(dataset, model, root), root)
    except FeatureStoreError as error:
        return str(error)


def nothing_usable(problems: Iterable[str]) -> NothingToEvaluate:
    """The error of a request none of whose stores can be evaluated, with each one's ``problems``."""
    return NothingToEvaluate("no store can be evaluated: " + "; ".join(problems))


def check_some_store_usable(requested: Mapping[str, Sequence[str]], root=None) -> None:
    """Raise ``nothing_usable`` before a run starts if no store of ``requested`` ({dataset: models})
    can be evaluated by ``header_problem``: `featurestore evaluate` says so without starting Prefect."""
    problems = [header_problem(dataset, model, root) for dataset, models in requested.items() for model in models]
    if all(problems):
        raise nothing_usable(problems)


def store_problem(dataset: str, model: str, root=None) -> str | None:
    """Why the (dataset, model) store cannot be evaluated, in one line, or ``None`` if it can."""
    try:
        report = verify_file(locate(dataset, model, root))
        if report.ok:
            return _built_from_another_manifest(dataset, report.path, root)
    except FeatureStoreError as error:
        return str(error)
    return _verify_failure(report)
