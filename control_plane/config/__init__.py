"""Loading and locating config documents (docs/reference.md §2)."""
