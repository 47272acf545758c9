"""Executing a Plan against the database: writes, locks, bookkeeping."""
