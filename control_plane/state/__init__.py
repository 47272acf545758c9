"""Desired rows (from config) and live rows (from the database) in one comparable shape."""
