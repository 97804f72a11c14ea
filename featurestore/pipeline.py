"""The checks of a feature-pipeline request (ingest -> extract -> evaluate), shared by
``featurestore run`` and the pipeline flow (a deployment calls the flow directly, so it checks
again): every name and option is checked before anything is ingested."""

from __future__ import annotations

from collections.abc import Sequence

from featurestore.evaluation.request import check_request as check_evaluate_request
from featurestore.extract import check_request as check_extract_request
from featurestore.ingest.recorded import pipeline_ingest
from featurestore.ingest.split import check_limit


def check_request(datasets: Sequence[str], models: Sequence[str], classifiers: Sequence[str] | None = None,
                  root=None, *, seed: int = 0, limit_per_class: int | None = None, mirror: str | None = None,
                  device: str = "auto") -> dict[str, dict]:
    """Check a pipeline request's datasets, models, classifiers, device and ``limit_per_class``, each
    problem in one line; return each dataset's ingest keyword arguments (``pipeline_ingest``)."""
    check_limit(limit_per_class)
    ingests = {name: pipeline_ingest(name, root, seed=seed, limit_per_class=limit_per_class, mirror=mirror)
               for name in datasets}
    # The device too: a deployment's `-p device=cuda` on a host without one failed only after ingesting.
    check_extract_request(models, device=device)
    check_evaluate_request(classifiers)
    return ingests
