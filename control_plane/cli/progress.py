"""What `cplane apply` says on stderr as it goes: its phases (locking, migrating, planning, writing
per kind with row counts, committing), and a progress bar on a terminal for large writes.

Duck-typed to control_plane.apply.execute.ApplyProgress, so that importing it costs nothing at start-up.
"""

from __future__ import annotations

import sys
from collections import Counter

import click

# Writes of more changes than this get a progress bar (on a terminal only).
BAR_THRESHOLD = 2000


class ApplyReporter:
    def __init__(self, *, bar: bool | None = None, colour: bool = False):
        self.allow_bar = sys.stderr.isatty() if bar is None else bar
        self.colour = colour
        self.bar = None
        self.counts: dict[str, Counter] = {}

    def _say(self, text: str) -> None:
        click.echo(click.style("apply: ", bold=True) + text if self.colour else f"apply: {text}", err=True,
                   color=self.colour)

    def phase(self, name: str, detail: str = "") -> None:
        if name == "committing":
            self._end_writes()
        self._say(f"{name}: {detail}" if detail else name)

    def waiting(self, timeout: float) -> None:
        self._say(f"locking: another apply holds the apply lock; waiting up to {timeout:g}s (--lock-timeout)")

    def start_writes(self, total: int) -> None:
        self._say(f"writing {total:,} change(s)")
        if self.allow_bar and total > BAR_THRESHOLD:
            self.bar = click.progressbar(length=total, label="apply: writing", file=sys.stderr, color=self.colour)
            self.bar.__enter__()

    def wrote(self, kind: str, action: str, rows: int) -> None:
        self.counts.setdefault(kind, Counter())[action] += rows
        if self.bar is not None:
            self.bar.update(rows)

    def _end_writes(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
        for kind, counts in self.counts.items():
            total = sum(counts.values())
            detail = ", ".join(f"{n:,} {action}" for action, n in counts.items())
            self._say(f"writing {kind}: {total:,} row(s) ({detail})")
        self.counts = {}

    def close(self) -> None:
        """After a failure mid-write: end the bar so the error starts on its own line."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
