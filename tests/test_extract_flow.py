"""The Prefect ``extract`` flow: plan, fan out, skip complete stores, shard and merge."""

from __future__ import annotations

import numpy as np
import pytest
from test_extract_support import onnx_cache_dir, shared_cache_root, write_photo_dataset

import featurestore

pytestmark = pytest.mark.slow
MODELS = ["efficientnet_lite0", "efficientnet_lite1"]


@pytest.fixture(scope="module", autouse=True)
def prefect():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_extracts_then_skips_then_shards(tmp_path, tmp_path_factory):
    from flows.extract import extract, run_extract

    onnx_cache = onnx_cache_dir(tmp_path_factory)
    root = shared_cache_root(tmp_path / "root", onnx_cache)
    write_photo_dataset(root, "photos", copies=2)
    first = extract(datasets=["photos"], models=MODELS, root=str(root))
    assert sorted((r["model"], r["status"]) for r in first) == [(m, "extracted") for m in MODELS]
    stores = {m: store_bytes(root, m) for m in MODELS}

    second = extract(datasets=["photos"], models=MODELS, root=str(root))
    assert sorted((r["model"], r["status"]) for r in second) == [(m, "skipped") for m in MODELS]
    assert {m: store_bytes(root, m) for m in MODELS} == stores

    sharded = shared_cache_root(tmp_path / "sharded", onnx_cache)
    write_photo_dataset(sharded, "photos", copies=2)
    # One run per shard, as on two hosts: the first leaves the merge to the run that completes the set.
    first_shard = run_extract("threads", 2, datasets=["photos"], models=MODELS, root=str(sharded), shards=2,
                              shard_index=0, share_decode=False)
    assert sorted((r["model"], r["status"]) for r in first_shard) == [(m, "shard-done") for m in MODELS]
    last_shard = run_extract("threads", 2, datasets=["photos"], models=MODELS, root=str(sharded), shards=2,
                             shard_index=1, share_decode=False)
    assert sorted((r["model"], r["status"]) for r in last_shard) == [(m, "merged") for m in MODELS]
    for model in MODELS:
        np.testing.assert_allclose(featurestore.load_arrays("photos", model, root=sharded).features,
                                   featurestore.load_arrays("photos", model, root=root).features, rtol=1e-5, atol=1e-5)


def store_bytes(root, model: str) -> bytes:
    from featurestore.store import store_path

    return store_path("photos", model, root).read_bytes()
