"""Which stores can be evaluated: the ones that exist, are complete and pass ``verify``."""

from __future__ import annotations

from featurestore.errors import FeatureStoreError
from featurestore.paths import check_name
from featurestore.store import locate, store_files, verify_file
from featurestore.store.catalog import final_path_of


def dataset_models(dataset: str, root=None) -> list[str]:
    """Models with a store file (complete or not) for ``dataset``, sorted by name."""
    check_name("dataset", dataset)
    finals = (final_path_of(p) for p in store_files(root) if final_path_of(p).parent.name == dataset)
    return sorted(dict.fromkeys(p.name.removesuffix(".h5") for p in finals))


def store_problem(dataset: str, model: str, root=None) -> str | None:
    """Why the (dataset, model) store cannot be evaluated, in one line, or ``None`` if it can."""
    try:
        report = verify_file(locate(dataset, model, root))
    except FeatureStoreError as error:
        return str(error)
    if report.ok:
        return None
    return f"{report.path}: fails verify ({'; '.join(report.problems)}); extract it again"
