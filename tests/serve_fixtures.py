"""`cplane serve` as a subprocess on a free port, for tests that need real workers and processes."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import httpx
import pytest
from helpers import cplane_cmd

REDIS_URL = os.environ.get("CPLANE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_url_or_skip() -> str:
    """The test Redis, or a loud skip (a failure when CPLANE_REQUIRE_REDIS is set, as in CI)."""
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # any failure means "not reachable"
        reason = f"no Redis reachable at {REDIS_URL}: {exc}"
        if os.environ.get("CPLANE_REQUIRE_REDIS"):
            pytest.fail(f"CPLANE_REQUIRE_REDIS is set but {reason}")
        pytest.skip(f"SKIPPING Redis test: {reason} (set CPLANE_REQUIRE_REDIS=1 to fail instead)")
    return REDIS_URL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, database_url: str, *, workers: int = 2, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATABASE_URL": database_url, **env}
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        try:
            return self._start()
        except BaseException:
            self.__exit__()  # never leave a server behind
            raise

    def _start(self) -> Server:
        self.proc = subprocess.Popen(
            cplane_cmd("serve", "--port", str(self.port), "--workers", str(self.workers), "--log-level", "warning"),
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cplane serve exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError("cplane serve did not answer within 60 s")
        # every worker up: each answers on its own accept; poll until a run of fresh connections succeeds
        ok_in_a_row = 0
        while ok_in_a_row < 4 * self.workers and time.monotonic() < deadline:
            try:
                ok_in_a_row = ok_in_a_row + 1 if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200 else 0
            except httpx.HTTPError:
                ok_in_a_row = 0
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc.stderr.close()


def poll(predicate, timeout: float, interval: float = 0.05):
    """Call `predicate` until it returns a truthy value (returned) or `timeout` seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
