"""Desired state as a function of time (docs/config.md#scheduling-changes).

A document may carry `metadata.effectiveFrom` / `metadata.effectiveUntil` (the object exists from
the first, inclusive, until the second, exclusive) and a top-level `schedule:` of
`{at, patch}` entries, JSON merge patches over `spec` from their time on (an overlay patch may add
entries too). This module holds the time logic: reading the times, each object's `Timing`, the
config at a time `t` (`at_time`), the times at which the desired state changes (`change_points`)
and the checks validate runs on schedules (`collect_timing`, `check_points`).

Every time is RFC 3339 with a zone; they are compared as aware datetimes in UTC.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from control_plane.config.loader import Document
    from control_plane.config.model import ConfigObject, ConfigSet

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$")
_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
#: The state "just before" a time: times are kept to the microsecond.
EPSILON = timedelta(microseconds=1)


class TimeError(ValueError):
    """A value that is not an RFC 3339 time with a zone (the message says why)."""


def parse_time(value: Any) -> datetime:
    """An RFC 3339 time with a zone (`2027-01-01T00:00:00Z`, `...+01:00`) as an aware UTC datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TimeError(f"time {value.isoformat()!r} has no zone (add Z or an offset such as +01:00)")
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise TimeError(f"expected an RFC 3339 time with a zone (e.g. 2027-01-01T00:00:00Z), got {value!r}")
    if not _RFC3339.match(value):
        if _LOCAL.match(value):
            raise TimeError(f"time {value!r} has no zone (add Z or an offset such as +01:00)")
        raise TimeError(f"expected an RFC 3339 time with a zone (e.g. 2027-01-01T00:00:00Z), got {value!r}")
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise TimeError(f"{value!r} is not a valid time: {exc}") from None


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with `Z` (seconds, or microseconds when it has them)."""
    t = t.astimezone(UTC)
    spec = "seconds" if not t.microsecond else "microseconds"
    return t.isoformat(timespec=spec).replace("+00:00", "Z")


@dataclass(frozen=True)
class Entry:
    """One schedule entry: `patch` merged over the spec from `at` on."""

    at: datetime
    patch: dict[str, Any]
    doc: Document
    path: tuple  # where the patch mapping is in `doc`
    label: str  # how audits and plans name it: "config/plans/pro.yaml:31 schedule[0]"

    def as_dict(self) -> dict[str, str]:
        return {"at": format_time(self.at), "entry": self.label}


@dataclass
class Timing:
    effective_from: datetime | None = None
    effective_until: datetime | None = None
    entries: list[Entry] = field(default_factory=list)  # in time order (stable)

    def exists(self, t: datetime) -> bool:
        return (self.effective_from is None or self.effective_from <= t) and (
            self.effective_until is None or t < self.effective_until)

    def points(self) -> set[datetime]:
        found = {e.at for e in self.entries}
        found.update(t for t in (self.effective_from, self.effective_until) if t is not None)
        return found

    @property
    def timed(self) -> bool:
        return bool(self.entries) or self.effective_from is not None or self.effective_until is not None


def merge_patch(target: Any, patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch (null removes a field), like overlays."""
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if isinstance(value, dict):
            result[key] = merge_patch(result.get(key), value)
        elif value is None:
            result.pop(key, None)
        else:
            result[key] = copy.deepcopy(value)
    return result


def timed_objects(config: ConfigSet) -> list[ConfigObject]:
    return [o for objects in config.objects.values() for o in objects.values()
            if o.timing is not None and o.timing.timed]


def change_points(config: ConfigSet) -> list[datetime]:
    """Every time at which the desired state may change, in order."""
    found: set[datetime] = set()
    for obj in timed_objects(config):
        found |= obj.timing.points()
    return sorted(found)


def next_point(config: ConfigSet, t: datetime) -> datetime | None:
    """The first time after `t` at which the desired state may change (None: it never does)."""
    return next((p for p in change_points(config) if p > t), None)


def spec_at(obj: ConfigObject, t: datetime) -> dict[str, Any] | None:
    """The raw spec of `obj` at `t` (None when the object does not exist then)."""
    timing = obj.timing
    if timing is None:
        return obj.raw_spec
    if not timing.exists(t):
        return None
    data = obj.raw_spec
    for entry in timing.entries:
        if entry.at <= t:
            data = merge_patch(data, entry.patch)
    return data


def object_at(obj: ConfigObject, t: datetime) -> ConfigObject | None:
    """`obj` as it is at `t`: its spec with every patch due, or None outside its window."""
    timing = obj.timing
    if timing is None or not timing.timed:
        return obj
    if not timing.exists(t):
        return None
    if not any(e.at <= t for e in timing.entries):
        return obj
    from control_plane.kinds.registry import CONFIG_KINDS

    data = spec_at(obj, t)
    origins = dict(obj.origins)
    for entry in timing.entries:
        if entry.at <= t:
            for leaf in _leaves(entry.patch):
                origins[leaf] = (entry.doc, (*entry.path, *leaf))
    try:
        spec = CONFIG_KINDS[obj.kind].spec.model_validate(data)
    except ValueError:  # pydantic's ValidationError: validate reports it at the patch
        return obj
    return replace(obj, spec=spec, raw_spec=data, origins=origins)


def at_time(config: ConfigSet, t: datetime, only_timed: bool = False) -> ConfigSet:
    """The config as it is at `t`: objects outside their window left out, patches due merged in.
    `only_timed`: only the objects that have a window or a schedule (for comparing two times)."""
    if not only_timed and not timed_objects(config):
        return config
    out = replace(config, objects={}, issues=list(config.issues))
    for kind, objects in config.objects.items():
        for name, obj in objects.items():
            if only_timed and (obj.timing is None or not obj.timing.timed):
                continue
            now = object_at(obj, t)
            if now is not None:
                out.objects.setdefault(kind, {})[name] = now
    return out


# --- validation ------------------------------------------------------------------------------------


def collect_timing(obj: ConfigObject, metadata, schedule: list[Any], doc: Document,
                   extra: list[tuple[list[Any], Document, tuple]], report) -> Timing:
    """The object's Timing from its metadata and schedule (and overlay schedules in `extra`),
    every problem reported where it was written: times without a zone, entries that are not
    {at, patch}, unordered entries, two patches of one field at the same time, a window that ends
    before it starts."""
    kind, name = obj.kind, obj.name
    timing = Timing()
    for attr, alias in (("effective_from", "effectiveFrom"), ("effective_until", "effectiveUntil")):
        value = getattr(metadata, attr)
        if value is None:
            continue
        try:
            setattr(timing, attr, parse_time(value))
        except TimeError as exc:
            report.at(doc, ("metadata", alias), kind, name, f"metadata.{alias}: {exc}", at_value=True)
    if timing.effective_from and timing.effective_until and timing.effective_until <= timing.effective_from:
        report.at(doc, ("metadata", "effectiveUntil"), kind, name,
                  f"metadata.effectiveUntil ({format_time(timing.effective_until)}) must be later than "
                  f"metadata.effectiveFrom ({format_time(timing.effective_from)})", at_value=True)
    entries: list[Entry] = []
    for items, where_doc, base in [(schedule, doc, ("schedule",)), *extra]:
        if not isinstance(items, list):
            report.at(where_doc, base, kind, name, f"{_path(base)}: a schedule is a list of {{at, patch}}", at_value=True)
            continue
        previous: datetime | None = None
        for i, item in enumerate(items):
            here = (*base, i)
            if not isinstance(item, dict) or set(item) != {"at", "patch"}:
                extra_keys = sorted(set(item) - {"at", "patch"}, key=str) if isinstance(item, dict) else []
                missing = sorted({"at", "patch"} - set(item)) if isinstance(item, dict) else []
                why = (f"unknown field {extra_keys[0]!r}" if extra_keys else
                       f"missing field {missing[0]!r}" if missing else f"got {type(item).__name__}")
                report.at(where_doc, (*here, extra_keys[0]) if extra_keys else here, kind, name,
                          f"{_path(here)}: a schedule entry has exactly at and patch; {why}")
                continue
            try:
                at = parse_time(item["at"])
            except TimeError as exc:
                report.at(where_doc, (*here, "at"), kind, name, f"{_path((*here, 'at'))}: {exc}", at_value=True)
                continue
            if not isinstance(item["patch"], dict):
                report.at(where_doc, (*here, "patch"), kind, name,
                          f"{_path((*here, 'patch'))}: a patch is a mapping of spec fields", at_value=True)
                continue
            if previous is not None and at < previous:
                report.at(where_doc, (*here, "at"), kind, name,
                          f"{_path((*here, 'at'))}: the schedule is not in time order: {format_time(at)} comes after "
                          f"{format_time(previous)}", at_value=True)
                continue
            previous = at
            from control_plane.config.loader import locate
            from control_plane.config.model import rel as _rel

            line, _ = locate(where_doc, here)
            entries.append(Entry(at, item["patch"], where_doc, (*here, "patch"),
                                 f"{_rel(where_doc.file)}:{line} {_path(here)}"))
    entries.sort(key=lambda e: e.at)
    # Two patches of one field at the same time: which one wins would be an accident of file order.
    by_time: dict[datetime, list[tuple[tuple, Entry]]] = {}
    for entry in entries:
        for leaf in _leaves(entry.patch):
            for other_leaf, other in by_time.get(entry.at, []):
                if other is not entry and (leaf[:len(other_leaf)] == other_leaf or other_leaf[:len(leaf)] == leaf):
                    report.at(entry.doc, (*entry.path, *leaf), kind, name,
                              f"spec.{'.'.join(map(str, leaf))}: two schedule patches set it at {format_time(entry.at)} "
                              f"(the other is {other.label})")
            by_time.setdefault(entry.at, []).append((leaf, entry))
    timing.entries = entries
    return timing


def _leaves(patch: dict[str, Any], at: tuple = ()) -> list[tuple]:
    out = []
    for key, value in patch.items():
        if isinstance(value, dict) and value:
            out += _leaves(value, (*at, key))
        else:
            out.append((*at, key))
    return out


def _path(path: tuple) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def check_specs_at_points(obj: ConfigObject, report, patch_spec, build_spec) -> None:
    """The spec of `obj` after each schedule entry, checked like a spec: a problem in a value a
    patch set is reported at the patch (unknown fields, types, constraints)."""
    if obj.timing is None or not obj.timing.entries:
        return
    data, origins = obj.raw_spec, dict(obj.origins)
    for entry in obj.timing.entries:
        data = patch_spec(data, entry.patch, (), entry.doc, entry.path, origins)
        probe = replace(obj, spec=None, raw_spec=data, origins=dict(origins), failed=frozenset())
        build_spec(probe, report)


def check_points(config: ConfigSet, checks, report_factory, base_issues: set) -> list:
    """The cross-object checks (references, names, ...) at every time the desired state changes,
    and before the first: a problem that only exists at some time is reported with that time."""
    points = change_points(config)
    if not points:
        return []
    found: dict[Any, Any] = {}
    plain = {(i.file, i.line, i.col, i.message) for i in base_issues}
    for t in [points[0] - EPSILON, *points]:
        sliced = at_time(config, t)
        sub = report_factory()
        for check in checks:
            check(sliced, sub)
        for issue in sub.issues:
            key = (issue.file, issue.line, issue.col, issue.message)
            if key in plain or key in found:
                continue
            when = f"before {format_time(points[0])}" if t < points[0] else f"at {format_time(t)}"
            found[key] = replace(issue, message=f"{issue.message} ({when})")
    return list(found.values())
