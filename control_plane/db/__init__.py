"""Engines and URLs, dialect strategies, the models of the whole database and its migrations."""
