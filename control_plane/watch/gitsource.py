"""A git checkout as the watch loop's config source: `git fetch` and a fast-forward each round.

A fetch or fast-forward that fails is reported and the checkout stays at the last good revision,
so the loop keeps reconciling what it had (nothing is lost, nothing half-updated)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from control_plane.errors import CplaneError

TIMEOUT = 60


class GitError(CplaneError):
    code = "git_error"


def _git(cwd: Path, *args: str, timeout: float = TIMEOUT) -> str:
    try:
        done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=timeout,
                              env=None)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"git {args[0]}: {exc}") from None
    if done.returncode != 0:
        detail = " ".join((done.stderr or done.stdout).split())[:300]
        raise GitError(f"git {args[0]} failed: {detail}")
    return done.stdout.strip()


@dataclass
class GitSource:
    config_dir: Path
    remote: str = "origin"
    branch: str | None = None

    def __post_init__(self):
        self.top = Path(_git(self.config_dir, "rev-parse", "--show-toplevel"))
        if not self.branch:
            self.branch = _git(self.top, "rev-parse", "--abbrev-ref", "HEAD")
            if self.branch == "HEAD":
                raise GitError(f"{self.top} is not on a branch; pass --git-branch")

    def revision(self) -> str:
        return _git(self.top, "rev-parse", "HEAD")

    def update(self) -> tuple[str, str]:
        """Fetch and fast-forward; (old revision, new revision). Raises GitError, leaving the checkout
        as it was."""
        before = self.revision()
        _git(self.top, "fetch", "--quiet", self.remote, self.branch)
        _git(self.top, "merge", "--ff-only", "--quiet", "FETCH_HEAD")
        return before, self.revision()
