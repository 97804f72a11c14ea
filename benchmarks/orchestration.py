"""Orchestration overhead: the pipeline through a Prefect deployment vs the same work as plain calls.

    .venv/bin/python benchmarks/orchestration.py [--limit-per-class 10] [--models efficientnet_lite0]

Both sides do the same work in the same run, each into a fresh root: ingest Fashion-MNIST (a
per-class subset), extract the models (ONNX export included), fit logistic regression and kNN
on each store, write the report. Side A triggers `prefect deployment run 'feature-pipeline/nightly'`
against a real server and a process worker (started beforehand, not timed) and waits for the run
to finish; side B runs the library functions the tasks wrap in a fresh Python process (imports
and interpreter start count on both sides, as for a cron job).
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


def plain_work(root: Path, models: list[str], limit: int) -> None:
    """The pipeline's work as plain library calls."""
    from featurestore.evaluation import evaluate_classifier, new_run_dir, write_report
    from featurestore.extract.runner import extract
    from featurestore.ingest.pipeline import ingest

    ingest("fashion-mnist", root, limit_per_class=limit)
    extract("fashion-mnist", models, root, progress=False)
    records = [evaluate_classifier("fashion-mnist", m, c, root=root, seed=0) for m in models for c in CLASSIFIERS]
    write_report(new_run_dir(root), records, [], {"models": models, "classifiers": CLASSIFIERS})


def plain(root: Path, models: list[str], limit: int) -> float:
    """Seconds for a fresh Python process running ``plain_work``, as a cron job would: imports count on both sides."""
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--plain-root", str(root), "--models", ",".join(models),
                    "--limit-per-class", str(limit)], check=True, capture_output=True)
    return time.perf_counter() - started


def server_side_seconds(api_url: str) -> float:
    """Seconds from the creation of the finished top-level flow run (the deployment's) to its end."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        finished = [r for r in client.read_flow_runs() if r.parent_task_run_id is None and r.end_time is not None]
    run = max(finished, key=lambda r: r.end_time)
    return (run.end_time - run.created).total_seconds()


def deployed(workdir: Path, root: Path, models: list[str], limit: int) -> tuple[float, float]:
    """The same work through `prefect deployment run` on a real server and worker.

    Returns (seconds the `prefect deployment run --watch` command took, seconds from the flow
    run's creation to its end as the server recorded them).
    """
    with prefect_server(workdir) as (api_url, env):
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
            return time.perf_counter() - started, server_side_seconds(api_url)
        finally:
            stop(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-per-class", type=int, default=10)
    parser.add_argument("--models", default="efficientnet_lite0")
    parser.add_argument("--plain-root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = args.models.split(",")
    if args.plain_root:
        plain_work(Path(args.plain_root), models, args.limit_per_class)
        return
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        through_deployment, recorded = deployed(scratch, scratch / "deployed-root", models, args.limit_per_class)
        as_functions = plain(scratch / "plain-root", models, args.limit_per_class)
    print(f"work: fashion-mnist, {args.limit_per_class} images per class and split, models {models}, "
          f"classifiers {CLASSIFIERS}")
    print(f"plain Python functions     {as_functions:7.1f} s")
    print(f"prefect deployment run     {through_deployment:7.1f} s   (the CLI command, its own start included)")
    print(f"flow run, created -> end   {recorded:7.1f} s   (as the server recorded it: a scheduled run's cost)")
    for label, seconds in (("CLI", through_deployment), ("scheduled", recorded)):
        print(f"orchestration overhead ({label:9}) {seconds - as_functions:+6.1f} s per run (target < 15 s); "
              f"ratio {seconds / as_functions:.2f}")
    print(json.dumps({"plain_s": round(as_functions, 2), "deployment_cli_s": round(through_deployment, 2),
                      "flow_run_s": round(recorded, 2)}))


if __name__ == "__main__":
    main()
