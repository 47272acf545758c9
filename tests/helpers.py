"""Small helpers several test modules share."""

from __future__ import annotations

import importlib.util
import sys
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
