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
