"""Plans as text and markdown for people (JSON is the planfile's own form)."""
