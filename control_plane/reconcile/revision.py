"""The config revision: the git commit of the config tree (no heavy imports: the fast path uses it)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def config_revision(config_dir: Path, digest: str = "") -> str:
    """The git commit of the config tree; empty outside git. When the tree has uncommitted edits,
    `<sha>-dirty+<digest12>` (the config digest's first 12 characters), so that two runs from two
    different dirty trees are told apart."""
    try:
        head = subprocess.run(["git", "-C", str(config_dir), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(config_dir), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=5)
        if not dirty.stdout.strip():
            return head.stdout.strip()
        return head.stdout.strip() + "-dirty" + (f"+{digest[:12]}" if digest else "")
    except (OSError, subprocess.SubprocessError):
        return ""
