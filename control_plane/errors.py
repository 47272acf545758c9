"""Errors that the CLI reports as one line on stderr (never a traceback)."""


class CplaneError(Exception):
    """An error a user can act on; its message is the whole story."""

    exit_code = 1


class DatabaseUnavailable(CplaneError):
    pass


class ConfigInvalid(CplaneError):
    pass
