"""The vocabulary: catalogs, document specs, the kind registry and JSON Schema generation."""
