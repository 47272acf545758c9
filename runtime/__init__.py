"""The tenant-facing runtime API."""
