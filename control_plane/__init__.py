"""cplane: system data as code, reconciled into the platform database."""

__version__ = "0.1.0"
