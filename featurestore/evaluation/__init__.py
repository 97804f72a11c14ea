"""Evaluation of feature stores: single classifiers, ensembles, metrics and reports.

Library code: no Prefect here; ``tasks/evaluate.py`` and ``flows/evaluate.py`` orchestrate it.
"""

from featurestore.evaluation.data import EvalData, load_eval_data
from featurestore.evaluation.errors import (
    ClassMissingFromTrain,
    EvaluationError,
    SingleClassDataset,
    StoresDisagree,
)
from featurestore.evaluation.history import NoRuns, finished_runs, history_frame, history_table, load_run
from featurestore.evaluation.metrics import compute_metrics
from featurestore.evaluation.readiness import store_problem
from featurestore.evaluation.report import table_rows, write_report
from featurestore.evaluation.request import check_request
from featurestore.evaluation.runs import discard_unfinished, new_run_dir
from featurestore.evaluation.schema import RESULTS_SCHEMA, validate_results
from featurestore.evaluation.single import evaluate_classifier
from featurestore.evaluation.stacking import evaluate_early_fusion, evaluate_stacking

__all__ = [
    "ClassMissingFromTrain", "EvalData", "EvaluationError", "NoRuns", "RESULTS_SCHEMA", "SingleClassDataset",
    "StoresDisagree", "check_request", "compute_metrics", "discard_unfinished", "evaluate_classifier",
    "evaluate_early_fusion", "evaluate_stacking", "finished_runs", "history_frame", "history_table",
    "load_eval_data", "load_run", "new_run_dir", "store_problem", "table_rows", "validate_results", "write_report",
]
