"""Orchestration overhead: the pipeline through a Prefect deployment vs the same work as plain calls.

    .venv/bin/python benchmarks/orchestration.py [--limit-per-class 10] [--models efficientnet_lite0]

Both sides do the same work in the same run, each into a fresh root: ingest Fashion-MNIST (a
per-class subset), extract the models (ONNX export included), fit logistic regression and kNN
on each store, write the report. Side A triggers `prefect deployment run 'feature-pipeline/nightly'`
against a real server and a process worker (started beforehand, not timed) and waits for the run
to finish; side B calls the library functions the tasks wrap, in one Python process.
Target (issue #6): under 15 s extra per run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from prefect_services import PREFECT, prefect_server, start, stop  # noqa: E402

CLASSIFIERS = ["logreg", "knn"]


def plain(root: Path, models: list[str], limit: int) -> float:
    """The pipeline's work as plain library calls; returns seconds."""
    from featurestore.evaluation import evaluate_classifier, new_run_dir, write_report
    from featurestore.extract.runner import extract
    from featurestore.ingest.pipeline import ingest

    started = time.perf_counter()
    ingest("fashion-mnist", root, limit_per_class=limit)
    extract("fashion-mnist", models, root, progress=False)
    records = [evaluate_classifier("fashion-mnist", m, c, root=root, seed=0) for m in models for c in CLASSIFIERS]
    write_report(new_run_dir(root), records, [], {"models": models, "classifiers": CLASSIFIERS})
    return time.perf_counter() - started


def deployed(workdir: Path, root: Path, models: list[str], limit: int) -> float:
    """The same work through `prefect deployment run` on a real server and worker; returns seconds."""
    with prefect_server(workdir) as (_, env):
        env.update(FEATURESTORE_CHECKOUT=str(REPO), PREFECT_WORKER_QUERY_SECONDS="1")
        for args in (["work-pool", "create", "featurestore", "--type", "process"], ["--no-prompt", "deploy", "--all"]):
            subprocess.run([*PREFECT, *args], env=env, cwd=REPO, check=True, capture_output=True)
        worker = start([*PREFECT, "worker", "start", "--pool", "featurestore"], env, workdir / "worker.log")
        try:
            time.sleep(5)  # let the worker connect; it is long-running in production too
            parameters = [f"root={root}", f"limit_per_class={limit}", "stacking=false",
                          "models=" + json.dumps(models), "classifiers=" + json.dumps(CLASSIFIERS), "workers=1"]
            started = time.perf_counter()
            subprocess.run([*PREFECT, "deployment", "run", "feature-pipeline/nightly",
                            *[x for p in parameters for x in ("-p", p)], "--watch"],
                           env=env, cwd=REPO, check=True, capture_output=True)
            return time.perf_counter() - started
        finally:
            stop(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-per-class", type=int, default=10)
    parser.add_argument("--models", default="efficientnet_lite0")
    args = parser.parse_args()
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        through_deployment = deployed(scratch, scratch / "deployed-root", models, args.limit_per_class)
        as_functions = plain(scratch / "plain-root", models, args.limit_per_class)
    print(f"work: fashion-mnist, {args.limit_per_class} images per class and split, models {models}, "
          f"classifiers {CLASSIFIERS}")
    print(f"plain Python functions     {as_functions:7.1f} s")
    print(f"prefect deployment run     {through_deployment:7.1f} s")
    extra = through_deployment - as_functions
    print(f"orchestration overhead     {extra:+7.1f} s per run (target < 15 s); ratio {through_deployment / as_functions:.2f}")
    print(json.dumps({"plain_s": round(as_functions, 2), "deployment_s": round(through_deployment, 2),
                      "overhead_s": round(extra, 2)}))


if __name__ == "__main__":
    main()
