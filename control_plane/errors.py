"""Errors that the CLI reports as one line on stderr (never a traceback).

Each carries a machine `code`: with `--format json` a failure is also printed on stdout as
`{"error": {"code": ..., "message": ...}}` (docs/reference.md §3).
"""


class CplaneError(Exception):
    """An error a user can act on; its message is the whole story."""

    exit_code = 1
    code = "error"

    def __init__(self, message: str = "", *, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class DatabaseUnavailable(CplaneError):
    code = "database_unavailable"


class ConfigInvalid(CplaneError):
    code = "config_invalid"


class LockHeld(CplaneError):
    """Another process holds a database-wide lock (apply, cleanup) past the --lock-timeout."""

    code = "lock_held"
