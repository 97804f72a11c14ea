"""The extract step: reader (decode once) -> per-backbone crops -> runtime -> background writer.

``extract(dataset, models)`` fills ``<root>/stores/<dataset>/<model>.h5`` for each model;
``merge_shards`` joins shard stores extracted on several devices or hosts into one store.
"""

from featurestore.extract.plan import Job, Shard, plan_jobs, store_model_name
from featurestore.extract.runner import ExtractResult, check_request, extract, pending_models
from featurestore.extract.runtimes import RUNTIMES, build_runtime, default_runtime, resolve_device
from featurestore.extract.shards import merge_shards

__all__ = ["ExtractResult", "Job", "RUNTIMES", "Shard", "build_runtime", "check_request", "default_runtime", "extract",
           "merge_shards", "pending_models", "plan_jobs", "resolve_device", "store_model_name"]
