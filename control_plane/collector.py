"""The cyclic garbage collector, paused while cplane builds large structures that it keeps.

Loading a 100,000-row config, reading the rows an export writes and applying a plan each make
hundreds of thousands to millions of objects that stay alive until the command ends. Python's
collector rescans every live container whenever allocations outgrow frees by its threshold, so
it walked the same heap again and again to find no garbage: a quarter of a cold load's CPU, about
0.6 s of an export's 1.6 s, a quarter of an apply's write phase (each measured at 100,000 rows,
docs/benchmarks.md). Reference counting still frees everything these stages drop (they make no
cycles of their own); whatever cycle there is gets collected once the collector is back on.
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """The collector off for the block, then as it was before (nesting keeps the outer state)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_FREEZE_AT_EXIT: list[bool] = []


def freeze_at_exit() -> None:
    """Everything alive frozen out of the collector's sight when the process ends. The
    interpreter's collection at shutdown would otherwise traverse a large command's heap once
    more for no garbage (measured ~0.06-0.1 s of CPU after a 100,000-row plan, apply or export
    had written its last byte); reference counting still frees what it frees. Registered once,
    by the process entry (cli/entry.py) before anything else, so it runs after every other exit
    handler. In-process callers (tests) never register it."""
    if not _FREEZE_AT_EXIT:
        _FREEZE_AT_EXIT.append(True)
        atexit.register(gc.freeze)
