"""A real Prefect server and worker for end-to-end tests, stopped by PID whatever happens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prefect_env(home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for Prefect commands: isolated home, no telemetry, optionally one API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_LOGGING_LEVEL="INFO", **extra)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def start(args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start a long-running process in its own process group, output to ``log``."""
    handle = log.open("w")
    return subprocess.Popen(args, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Stop a process and every child it started (its process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_healthy(api_url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Block until the server answers /health, failing early if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"prefect server did not become healthy in {timeout}s: {log.read_text()[-2000:]}")


@contextmanager
def prefect_server(workdir: Path):
    """A real `prefect server start` on 127.0.0.1 and a free port; yields (api_url, env)."""
    home = workdir / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log = workdir / "server.log"
    server = start([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                   prefect_env(home), log)
    try:
        wait_healthy(api_url, server, log)
        yield api_url, prefect_env(home, api_url)
    finally:
        stop(server)
