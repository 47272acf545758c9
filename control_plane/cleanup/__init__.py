"""Cleanup by classification manifest (docs/reference.md §6).

- `manifest`: load the CleanupManifest document and check it against the live schema.
- `schema`: the live schema (tables, keys, foreign keys) and identifier quoting.
- `planner`: the rows a profile deletes per table, in foreign-key-safe order.
- `executor`: delete them in bounded batches, verify system data unchanged, write the audit record.
"""

from control_plane.cleanup.executor import CleanupResult, execute
from control_plane.cleanup.manifest import Manifest, ManifestError, Problem, check_manifest, load_manifest
from control_plane.cleanup.planner import CleanupPlan, Step, build_plan
from control_plane.cleanup.schema import Schema, reflect_schema

__all__ = [
    "CleanupPlan",
    "CleanupResult",
    "Manifest",
    "ManifestError",
    "Problem",
    "Schema",
    "Step",
    "build_plan",
    "check_manifest",
    "execute",
    "load_manifest",
    "reflect_schema",
]
