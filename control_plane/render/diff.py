"""Complete, structural diffs of field values, for the text and Markdown renderers.

A field's change becomes a list of entries, each naming exactly what changed:

- a scalar:               ``path: before → after``
- a map:                  one entry per changed path (``providers.openai.timeoutSeconds: 30 → 60``),
                          keys added (``+``) or removed (``-``)
- a list:                 the elements added (``+``) and removed (``-``); a list whose elements stay and only
                          move is one ``reordered`` entry; elements that are maps (or long text) and changed in
                          place are diffed at their index (``sections[2].guidance``)
- multi-line or long text: a line diff in unified style (``@@`` hunks, 3 lines of context, ``-``/``+`` lines);
                          in a changed line that resembles the line it replaces, the changed words are marked

Nothing is ever cut: every value is shown in full. Decimals and dates are shown in canonical form
(decimals with their column's scale, dates in ISO 8601), as in the JSON plan. This module only computes;
plan.py lays the entries out.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from control_plane.plans.model import Change

CONTEXT_LINES = 3
# A single-line string longer than this is prose: diffed word by word instead of shown twice.
PROSE_CHARS = 80
# Two lines at least this similar (difflib ratio over their words) are one line edited: its words are marked.
WORD_SIMILARITY = 0.5

_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


# --- values ----------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return canonical_decimal(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def canonical_decimal(value: Decimal, scale: int | None = None) -> str:
    if scale is not None:
        value = value.quantize(Decimal(1).scaleb(-scale))
    return format(value, "f")


def fmt(value: Any) -> str:
    """A value in full, as JSON (strings quoted, decimals and dates as canonical strings)."""
    cls = value.__class__
    if cls is str:  # the bulk of a large plan's attributes (json.dumps, without building an encoder)
        return _encode_str(value)
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if isinstance(value, Decimal):
        return json.dumps(canonical_decimal(value))
    if isinstance(value, (datetime, date, time)):
        return json.dumps(value.isoformat())
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=_json_default)


_encode_str = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses for a str


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def column_value(kind: str, column: str, value: Any) -> Any:
    """A column's value in canonical form: numerics with their column's scale (as the plan's fields show
    them), whether the plan holds a Decimal (computed) or its JSON string (loaded from a file)."""
    if isinstance(value, bool):
        return value
    scale = _scale(kind, column)
    if scale and isinstance(value, (Decimal, int, float, str)):
        try:
            return canonical_decimal(Decimal(str(value)), scale)
        except InvalidOperation:
            return value
    return value


@cache
def _scale(kind: str, column: str) -> int | None:
    """The numeric scale of a column (None: not numeric, or not a column of a known kind)."""
    from control_plane.kinds.registry import ROW_KINDS

    rk = ROW_KINDS.get(kind)
    if rk is None or column not in rk.table.c:
        return None
    return getattr(rk.table.c[column].type, "scale", None)


def visible(text: str) -> str:
    """A line as shown: control characters (escape sequences, carriage returns) escaped, tabs kept."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch == "\t" or unicodedata.category(ch) != "Cc" else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def join_path(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = str(key)
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


# --- text ------------------------------------------------------------------------------------------


@dataclass
class DiffLine:
    tag: str  # " " context, "-" removed, "+" added
    # (text, changed): changed words are marked only in a line that replaces a similar one.
    segments: list[tuple[str, bool]]

    @property
    def text(self) -> str:
        return "".join(s for s, _ in self.segments)


@dataclass
class Hunk:
    header: str | None  # "@@ -37,4 +37,4 @@"; None when both sides are a single line
    lines: list[DiffLine]


@dataclass
class TextDiff:
    before_lines: int
    after_lines: int
    hunks: list[Hunk]
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(h.lines) + (h.header is not None) for h in self.hunks) + len(self.notes)


def _lines(text: str | None) -> tuple[list[str], bool]:
    if not text:
        return [], False
    final_newline = text.endswith("\n")
    lines = text.split("\n")
    if final_newline:
        lines.pop()
    return lines, final_newline


# Past this many comparisons (len x len of what differs once the common head and tail are set aside),
# the differing middle is shown as one replaced block instead of being matched: difflib is quadratic
# and a hostile or huge value must not stall a plan.
MATCH_BUDGET = 250_000

Opcode = tuple[str, int, int, int, int]


def opcodes(a: list, b: list) -> list[Opcode]:
    """difflib-style opcodes (equal, replace, delete, insert) turning `a` into `b`; the common head and
    tail are matched directly, only the middle goes through SequenceMatcher, within MATCH_BUDGET."""
    n, m = len(a), len(b)
    head = 0
    while head < n and head < m and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < n - head and tail < m - head and a[n - 1 - tail] == b[m - 1 - tail]:
        tail += 1
    codes: list[Opcode] = [("equal", 0, head, 0, head)] if head else []
    mid_a, mid_b = a[head:n - tail], b[head:m - tail]
    if mid_a and mid_b and len(mid_a) * len(mid_b) <= MATCH_BUDGET:
        matcher = difflib.SequenceMatcher(None, mid_a, mid_b, autojunk=False)
        codes += [(tag, i1 + head, i2 + head, j1 + head, j2 + head) for tag, i1, i2, j1, j2 in matcher.get_opcodes()]
    elif mid_a or mid_b:
        tag = "replace" if mid_a and mid_b else "delete" if mid_a else "insert"
        codes.append((tag, head, n - tail, head, m - tail))
    if tail:
        codes.append(("equal", n - tail, n, m - tail, m))
    return codes


def grouped(codes: list[Opcode], context: int) -> list[list[Opcode]]:
    """The opcodes as hunks with `context` equal items around each change (difflib's grouping)."""
    codes = list(codes)
    if not codes or all(tag == "equal" for tag, *_ in codes):
        return []
    if codes[0][0] == "equal":
        tag, i1, i2, j1, j2 = codes[0]
        codes[0] = tag, max(i1, i2 - context), i2, max(j1, j2 - context), j2
    if codes[-1][0] == "equal":
        tag, i1, i2, j1, j2 = codes[-1]
        codes[-1] = tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)
    groups: list[list[Opcode]] = []
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > 2 * context:
            group.append((tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - context), max(j1, j2 - context)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups


def _range(start: int, stop: int) -> str:
    begin, length = start + 1, stop - start
    if length == 1:
        return str(begin)
    if length == 0:
        begin -= 1
    return f"{begin},{length}"


def word_diff(old: str, new: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]] | None:
    """The words of `old` that `new` removed and of `new` that it added, or None when the lines are not
    similar enough for word marks to help (then the whole line is the change)."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    codes = opcodes(a, b)
    same = sum(i2 - i1 for tag, i1, i2, _, _ in codes if tag == "equal")
    if not a or not b or 2 * same / (len(a) + len(b)) < WORD_SIMILARITY:
        return None
    removed: list[tuple[str, bool]] = []
    added: list[tuple[str, bool]] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal":
            removed.append(("".join(a[i1:i2]), False))
            added.append(("".join(b[j1:j2]), False))
            continue
        if i2 > i1:
            removed.append(("".join(a[i1:i2]), True))
        if j2 > j1:
            added.append(("".join(b[j1:j2]), True))
    if not any(changed for _, changed in removed + added):
        return None
    return _tidy(_merge(removed)), _tidy(_merge(added))


def _tidy(segments: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Blanks at the edges of a mark go outside it: `Markdown, {+and+} no`, not `Markdown,{+ and+} no`."""
    out: list[tuple[str, bool]] = []
    for text, changed in segments:
        core = text.strip()
        parts = [(text, changed)]
        if changed and core and core != text:
            lead, trail = text[:len(text) - len(text.lstrip())], text[len(text.rstrip()):]
            parts = [(lead, False), (core, True), (trail, False)]
        for part, mark in parts:
            if not part:
                continue
            if out and out[-1][1] == mark:
                out[-1] = (out[-1][0] + part, mark)
            else:
                out.append((part, mark))
    return out


def _merge(segments: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Join marked words separated only by blanks into one mark: `[-quick brown-]`, not `[-quick-] [-brown-]`."""
    out: list[tuple[str, bool]] = []
    i = 0
    while i < len(segments):
        text, changed = segments[i]
        if (not changed and not text.strip() and out and out[-1][1]
                and i + 1 < len(segments) and segments[i + 1][1]):
            out[-1] = (out[-1][0] + text + segments[i + 1][0], True)
            i += 2
            continue
        if out and out[-1][1] == changed:
            out[-1] = (out[-1][0] + text, changed)
        elif text:
            out.append((text, changed))
        i += 1
    return out


def text_diff(before: str | None, after: str | None, context: int = CONTEXT_LINES) -> TextDiff:
    a, a_newline = _lines(before)
    b, b_newline = _lines(after)
    single = len(a) <= 1 and len(b) <= 1
    hunks: list[Hunk] = []
    for group in grouped(opcodes(a, b), context):
        lines: list[DiffLine] = []
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [DiffLine(" ", [(visible(line), False)]) for line in a[i1:i2]]
                continue
            old, new = a[i1:i2], b[j1:j2]
            removed = [DiffLine("-", [(visible(line), False)]) for line in old]
            added = [DiffLine("+", [(visible(line), False)]) for line in new]
            for k in range(min(len(old), len(new))):
                words = word_diff(old[k], new[k])
                if words:
                    removed[k] = DiffLine("-", [(visible(t), c) for t, c in words[0]])
                    added[k] = DiffLine("+", [(visible(t), c) for t, c in words[1]])
            lines += removed + added
        first, last = group[0], group[-1]
        header = None if single else f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@"
        hunks.append(Hunk(header, lines))
    notes = []
    if a_newline != b_newline and a and b:
        notes.append("final newline " + ("added" if b_newline else "removed"))
    if not hunks and not notes and before != after:
        notes.append("only line endings or invisible characters changed")
    return TextDiff(len(a), len(b), hunks, notes)


def is_text(before: Any, after: Any) -> bool:
    """Text shown as a line diff: both sides strings (or one absent and the other multi-line), at least
    one of them multi-line or prose-long."""
    if isinstance(before, str) and isinstance(after, str):
        return "\n" in before or "\n" in after or max(len(before), len(after)) > PROSE_CHARS
    if before is None and isinstance(after, str) or after is None and isinstance(before, str):
        return "\n" in (before or after)
    return False


# --- structure -------------------------------------------------------------------------------------


@dataclass
class Entry:
    op: str  # "change" | "add" | "remove" | "reorder" | "text"
    path: str
    before: Any = None
    after: Any = None
    text: TextDiff | None = None

    @property
    def value(self) -> Any:
        return self.after if self.op == "add" else self.before


def _pairable(a: Any, b: Any) -> bool:
    """Two elements at the same place in a replaced run are one element edited in place."""
    if isinstance(a, dict) and isinstance(b, dict) or isinstance(a, list) and isinstance(b, list):
        return True
    return isinstance(a, str) and isinstance(b, str) and is_text(a, b)


def diff(path: str, before: Any, after: Any) -> list[Entry]:
    """Every difference between two values, as entries naming exactly the path and element."""
    if isinstance(before, dict) and isinstance(after, dict):
        return _diff_map(path, before, after)
    if isinstance(before, list) and isinstance(after, list):
        return _diff_list(path, before, after)
    if is_text(before, after):
        return [Entry("text", path, before, after, text=text_diff(before, after))]
    if _key(before) == _key(after):
        return []
    return [Entry("change", path, before, after)]


def _diff_map(path: str, before: dict, after: dict) -> list[Entry]:
    entries: list[Entry] = []
    for key in [*before, *(k for k in after if k not in before)]:
        sub = join_path(path, key)
        if key not in after:
            entries.append(Entry("remove", sub, before=before[key]))
        elif key not in before:
            value = after[key]
            if isinstance(value, str) and "\n" in value:
                entries.append(Entry("text", sub, None, value, text=text_diff(None, value)))
            else:
                entries.append(Entry("add", sub, after=value))
        else:
            entries += diff(sub, before[key], after[key])
    return entries


def _diff_list(path: str, before: list, after: list) -> list[Entry]:
    a, b = [_key(x) for x in before], [_key(x) for x in after]
    if a == b:
        return []
    if sorted(a) == sorted(b):
        return [Entry("reorder", path, before, after)]
    entries: list[Entry] = []
    for tag, i1, i2, j1, j2 in opcodes(a, b):
        if tag == "equal":
            continue
        paired = 0
        if tag == "replace":
            while (paired < min(i2 - i1, j2 - j1)
                   and _pairable(before[i1 + paired], after[j1 + paired])):
                entries += diff(join_path(path, j1 + paired), before[i1 + paired], after[j1 + paired])
                paired += 1
        entries += [Entry("remove", path, before=x) for x in before[i1 + paired:i2]]
        entries += [Entry("add", path, after=x) for x in after[j1 + paired:j2]]
    return entries


def flatten(path: str, value: Any) -> list[tuple[str, Any]]:
    """The attributes of a created object, one per path: maps by key, lists of maps or lists by index,
    lists of scalars whole; every leaf in full."""
    if isinstance(value, dict) and value:
        return [item for key, v in value.items() for item in flatten(join_path(path, key), v)]
    if isinstance(value, list) and any(isinstance(x, (dict, list)) for x in value):
        return [item for i, v in enumerate(value) for item in flatten(join_path(path, i), v)]
    return [(path, value)]


# --- a change's fields, as the renderers list them ---------------------------------------------


def field_entries(change: Change) -> list[Entry]:
    """An update's (or adopt's, or retire's) fields as complete diffs: exactly the paths that changed."""
    entries: list[Entry] = []
    for f in change.fields:
        before, after = column_value(change.kind, f.field, f.before), column_value(change.kind, f.field, f.after)
        entries += diff(f.field, before, after) or [Entry("change", f.field, before, after)]
    return entries


def create_attributes(change: Change) -> list[tuple[str, Any]]:
    """Every attribute a create writes, one per path; the secrets it sets come from its fields, masked."""
    items = [item for column, value in change.values.items()
             for item in flatten(column, column_value(change.kind, column, value))]
    items += [item for f in change.fields if f.field not in change.values for item in flatten(f.field, f.after)]
    return items
