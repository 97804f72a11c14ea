"""Shared fixtures: every test gets its own featurestore root and no telemetry."""

import os

import pytest

pytest_plugins = ["fixtures_datasets"]

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty featurestore root, also exported as FEATURESTORE_HOME for code that reads the environment."""
    path = tmp_path / "fs-home"
    path.mkdir()
    monkeypatch.setenv("FEATURESTORE_HOME", str(path))
    return path
