"""Loading and locating config documents (DESIGN §2)."""
