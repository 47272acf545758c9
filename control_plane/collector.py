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
