"""Whether output may be coloured: standard library only, since the raw-driver entry
(cli/entry.py) asks it before click is imported, and the click commands (cli/context.py) ask it too."""

from __future__ import annotations

import os
import sys


def colour_allowed(no_color: bool = False, stream=None) -> bool:
    """Colour only on a terminal, and neither `--no-color` nor `NO_COLOR` (any non-empty value) set."""
    stream = sys.stdout if stream is None else stream
    if no_color or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
