"""What the process entry's raw no-change path (cli/entry.py) hands to the click command it runs
next (cli/reconcile.py): standard library only, so that neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

# When the raw path read the record and it did not vouch for `No changes`, the click command of
# the same process (cli/reconcile.py) does not ask it again: entry.main() keeps here the command line's
# options and the inputs the decision hashed (nochange.Inputs, hashed before anything was read),
# which the command takes once (take_decided) for its incremental plan instead of hashing the tree
# again. Only entry.main() keeps them, and only for the one click command it runs next.
DECIDED: list[tuple[dict[str, object], object]] = []


def take_decided(command: str, config_dir, environment: str | None, database_url: str | None):
    """The inputs the raw path hashed in this process before it found that the record does not
    vouch for `No changes`, when that was for this command and these options; else None."""
    if not DECIDED:
        return None
    options, wanted = DECIDED.pop()
    same = (options["command"] == command and Path(options["config_dir"]) == Path(config_dir)
            and options["environment"] == environment and options["database_url"] == database_url)
    return wanted if same else None
