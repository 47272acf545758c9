"""The whole validation of a config tree: config/'s checks plus the ones that need desired rows.

config/ knows documents and state/ knows rows; neither imports the other's checks, so the full
check is assembled here, above both. `validate`, plan and apply all go through this module.
"""

from __future__ import annotations

from pathlib import Path

from control_plane.collector import paused_gc
from control_plane.config.validate import ConfigSet, load_config, overlay_environments, sorted_issues
from control_plane.state.desired import Rows, config_rows, object_rows
from control_plane.state.limits import column_limit_issues


def load_checked(root: Path | str, environment: str | None = None,
                 reuse: ConfigSet | None = None, disk_cache: bool = True, *,
                 applied: bool = False, lazy: bool = False) -> tuple[ConfigSet, Rows | None]:
    """load_config plus column limits; with the rows flattened for the check (None when the config
    is invalid, or when `reuse` made the check cover only this environment's own objects).
    applied: the caller knows these exact inputs passed every check (a plan whose inputs are those
    of the recorded apply, reconcile/incremental.inputs_applied, which checked them with this same
    cplane): the checks across files and the column limits, which only report and are functions of
    the same files and rows, are not run again; each file's own checks are its cache entry's.

    `disk_cache`: False keeps the per-file cache in memory (config/cache.py; CPLANE_NO_CACHE=1 does
    that everywhere): for a caller checking a tree it just wrote elsewhere (export's check of its
    output), so that no `.cplane/cache/` appears beside that tree.

    lazy: the rows of cache entries read from disk stay packed until asked for (config_rows(lazy=True),
    state/lazyrows.py): for an incremental plan, which compares a few of them."""
    with paused_gc():  # the rows below are as many objects again as the load (collector.py)
        return _load_checked(root, environment, reuse, disk_cache, applied, lazy)


def packed_rows(obj) -> list:
    """load_config's flatten hook for a lazy load: an object from the cache keeps its rows as they
    are (packed runs when read from disk); any other object is flattened."""
    cached = getattr(obj, "cached_rows", None)
    return cached if cached is not None else object_rows(obj)


def _load_checked(root: Path | str, environment: str | None, reuse: ConfigSet | None,
                  disk_cache: bool, applied: bool, lazy: bool) -> tuple[ConfigSet, Rows | None]:
    config = load_config(root, environment, reuse=reuse, flatten=packed_rows if lazy else object_rows,
                         disk_cache=disk_cache, cross_checks=not applied)
    if not config.ok:  # rows can only be built from a config that is valid so far
        return config, None
    checked = config
    if config.own_objects is not None:
        checked = ConfigSet(config.root, config.environment, objects={})
        for kind, name in config.own_objects:
            if name in config.of_kind(kind):
                checked.objects.setdefault(kind, {})[name] = config.of_kind(kind)[name]
    rows = config_rows(checked, lazy=lazy)
    if applied and checked is config:
        return config, rows
    limited, passed = (_unchecked_rows(config, rows) if lazy and checked is config else (rows, None))
    issues = column_limit_issues(config, limited)
    issues += _limits_at_change_points(checked, issues)
    if issues:
        config.issues = sorted_issues(issues)
        return config, None
    if passed is not None:
        for content in passed:
            config._loaded.mark_limits_checked(content)  # type: ignore[union-attr]
    return config, rows if checked is config else None


def _unchecked_rows(config: ConfigSet, rows: Rows) -> tuple[Rows, set[bytes] | None]:
    """For the column limits of a lazy load: the rows of the objects whose file's cache entry is not
    marked as having passed them (config/cache.FileCache.limits_checked), and the contents of every
    cached file, to mark once the config passed. A marked file's rows are a function of its content
    and the salt (limits.py and the column sizes among it), which passed: checking them again finds
    nothing. (Without a disk cache, or when nothing is marked: every row, as always.)"""
    from control_plane.config.cache import FileCache
    from control_plane.config.model import CachedObject

    cache = getattr(config, "_loaded", None)
    if not isinstance(cache, FileCache) or cache.dir is None:
        return rows, None
    marked: dict[bytes, bool] = {}
    subset = ConfigSet(config.root, config.environment, objects={})
    skipped = False
    for kind, objects in config.objects.items():
        for name, obj in objects.items():
            if isinstance(obj, CachedObject):
                content = obj.doc._source.content
                if content not in marked:
                    marked[content] = cache.limits_checked(content)
                if marked[content]:
                    skipped = True
                    continue
            subset.objects.setdefault(kind, {})[name] = obj
    return (config_rows(subset, lazy=True) if skipped else rows), set(marked)


def _limits_at_change_points(config: ConfigSet, base: list) -> list:
    """Column limits of the values scheduled patches set, at every time the state changes."""
    from dataclasses import replace

    from control_plane.config.schedule import at_time, change_points, format_time

    seen = {(i.file, i.line, i.col, i.message) for i in base}
    found: dict[tuple, object] = {}  # each problem once, at the first time it appears
    for t in change_points(config):
        sliced = at_time(config, t, only_timed=True)
        for issue in column_limit_issues(sliced, config_rows(sliced)):
            key = (issue.file, issue.line, issue.col, issue.message)
            if key not in seen:
                found.setdefault(key, replace(issue, message=f"{issue.message} (from {format_time(t)})"))
    return list(found.values())


def validate_all(root: Path | str, environment: str | None = None) -> ConfigSet:
    """With an environment, that environment; without, the base and every environment's desired state."""
    base, _ = load_checked(root, environment)
    if environment is not None:
        return base
    issues, warnings = set(base.issues), set(base.warnings)
    for env in overlay_environments(root):
        derived = load_checked(root, env, reuse=base)[0]
        issues.update(derived.issues)
        warnings.update(derived.warnings)
    base.issues = sorted_issues(issues)
    base.warnings = sorted_issues(warnings)
    return base
