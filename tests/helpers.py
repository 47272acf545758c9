"""Plain helpers the test modules share (functions, classes, constants). Every fixture is in
conftest.py; nothing here is a fixture."""

from __future__ import annotations

import importlib.util
import socket
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def load_script(relative: str) -> ModuleType:
    """Import a script that is not in a package (bench/*.py, .github/scripts/*.py) by its path."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cplane_cmd(*args: str) -> list[str]:
    """The installed console script, as CI and users run it (or the module when not installed)."""
    exe = Path(sys.executable).with_name("cplane")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "control_plane"]
    return [*head, *args]


def libpq_url(engine) -> str:
    """The engine's URL as psycopg and the CLI take it, password included."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


TEST_PLAN = """\
# yaml-language-server: $schema=../../schemas/Plan.json
apiVersion: cplane/v1
kind: Plan
metadata:
  name: test-plan
  annotations: {annotations}
spec:
  displayName: Test Plan
  priceMonthly: {price}
  priceYearly: 190
  currency: USD
  monthlyCredits: 100
  maxSites: 2
  maxUsers: 3
  modules: [planner, writer]
  features: [ai_content]
"""

TEST_INDUSTRY = """\
# yaml-language-server: $schema=../../schemas/Industry.json
apiVersion: cplane/v1
kind: Industry
metadata:
  name: test-industry
spec:
  displayName: Test Industry
  sectors:
    - name: {sector}
      displayName: First Sector
      seedKeywords:
        - keyword: alpha one
          searchVolume: 100
        - keyword: alpha two
    - name: second
      displayName: Second Sector
      seedKeywords:
        - keyword: beta one
"""


class ConfigTree:
    def __init__(self, root: Path):
        self.root = root

    def write(self, relative: str, content: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
        return path

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink()

    # The test plan's price edits are approved by default (the shipped policy price-change-approval
    # asks for cplane/approved-by over 20%); tests of that policy pass annotations="{}".
    def test_plan(self, price="19", annotations="{cplane/approved-by: test}") -> None:
        self.write("plans/test-plan.yaml", TEST_PLAN.format(price=price, annotations=annotations))

    def test_industry(self, sector="first") -> None:
        self.write("industries/test-industry.yaml", TEST_INDUSTRY.format(sector=sector))


@dataclass
class TenantInfo:
    account_id: str
    key: str
    plan: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


# The secret variables the repo's config names, set by the plan tests' `applied` fixture (conftest.py).
PLAN_SECRETS = {"STRIPE_SECRET_KEY": "sk_1", "STRIPE_WEBHOOK_SECRET": "wh_1", "PAYPAL_CLIENT_SECRET": "pp_1",
                "PAYPAL_WEBHOOK_ID": "pw_1", "OPENAI_API_KEY": "oa_1", "RUNWARE_API_KEY": "rw_1"}


def apply_repo_config(engine, config_dir: Path | None = None) -> None:
    from control_plane.reconcile.controller import apply_config

    apply_config(engine, config_dir or REPO / "config", environment=None, actor="test")


def new_tenant(engine, plan: str = "pro", name: str | None = None) -> TenantInfo:
    from runtime.accounts import create_account

    suffix = uuid.uuid4().hex[:8]
    result = create_account(engine, name=name or f"Tenant {suffix}", plan=plan, owner_email=f"owner-{suffix}@example.com")
    return TenantInfo(account_id=result["account_id"], key=result["api_key"], plan=plan)


class LiveServer:
    """The app served by a real uvicorn in a thread, for tests that need real concurrency."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def ok(response, status: int = 200):
    """The JSON of a response that must have `status` (the body is shown when it has not)."""
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def wait_for(condition, timeout: float, what: str, interval: float = 0.1):
    """Poll `condition` until it returns something truthy (returned) or `timeout` seconds pass (fails)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class WatchProcess:
    """`cplane watch` as a user runs it: a subprocess with its status server on a free port; its
    stderr lines are collected by a thread."""

    def __init__(self, *args: str, database_url: str, config_dir: Path, env: dict | None = None,
                 listen: bool = True, cwd: Path | None = None):
        import os
        import subprocess

        self.lines: list[str] = []
        command = cplane_cmd("watch", "--database-url", database_url, "--config", str(config_dir), *args)
        if listen:
            command += ["--listen", "127.0.0.1:0"]
        environ = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=environ, cwd=cwd)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""
        if listen:
            line = wait_for(lambda: self.find("status page on http://") or self.proc.poll() is not None, 30,
                            "the status page to start")
            if line is True:
                raise AssertionError(f"cplane watch exited {self.proc.returncode}: {self.text()}")
            self.url = line.split("status page on ", 1)[1].strip().rstrip("/")

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def find(self, needle: str) -> str | None:
        return next((line for line in list(self.lines) if needle in line), None)

    def text(self) -> str:
        return "\n".join(self.lines)

    def get(self, path: str, **kwargs):
        import httpx

        return httpx.get(self.url + path, timeout=10, **kwargs)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Every sample of /metrics, parsed by prometheus_client's own parser: {(name, labels): value}."""
        from prometheus_client.parser import text_string_to_metric_families

        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        out = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def metric(self, name: str, **labels) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def rounds(self) -> int:
        return self.get("/healthz").json()["rounds"]

    def stop(self, timeout: float = 30) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def __enter__(self) -> WatchProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            try:
                self.stop()
            except Exception:
                self.proc.kill()
                self.proc.wait(10)


class WebhookReceiver:
    """A local HTTP server that records every POSTed JSON body; `fail_first` answers 500 that many times."""

    def __init__(self, fail_first: int = 0):
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[dict] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.attempts += 1
                if receiver.attempts <= fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def events(self) -> list[str]:
        return [b.get("event", "") for b in self.bodies]

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
