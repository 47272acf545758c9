"""Plans as text (Terraform-like), Markdown (pull-request comments) and JSON. Rendering never computes.

Every change is shown in full: updates field by field as complete diffs (render/diff.py), creates with
every attribute they write (secrets as "(sensitive)"), every change of every kind. Only two things
shorten a plan, both saying so: `compact=True` (`cplane plan --compact`), which counts creates per kind
instead of listing them, and Markdown's comment budget, which leaves out whole kind sections that do not
fit in a GitHub comment and points to the full plan instead.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from control_plane.plans.model import SUMMARY_ACTIONS, Change, Plan
from control_plane.render.diff import (
    Entry,
    TextDiff,
    _encode_str,
    _scale,
    column_value,
    create_attributes,
    field_entries,
    flatten,
    fmt,
    visible,
)
from control_plane.render.scheduled import scheduled_markdown, scheduled_text
from control_plane.render.words import NO_CHANGES

MARKERS = {"create": "+", "update": "~", "adopt": "<", "delete": "-", "retire": "!"}
VERBS = {
    "create": "will be created",
    "update": "will be updated in place",
    "adopt": "will be adopted (exists, not created by cplane; taken under management, needs --adopt)",
    "delete": "will be deleted",
    "retire": "will be retired (deactivated, kept)",
}

# GitHub refuses a comment body over 65,536 characters. The Markdown plan keeps within MARKDOWN_LIMIT,
# which leaves room for what .github/scripts/plan_comment.py wraps around it (marker, failures, footer).
GITHUB_COMMENT_LIMIT = 65_536
MARKDOWN_LIMIT = 60_000
# In Markdown, a text block or line diff longer than this folds into its own <details>.
FOLD_LINES = 15

_ANSI = {"red": "31", "green": "32", "yellow": "33", "magenta": "35", "cyan": "36"}
COLOURS = {"+": "green", "~": "yellow", "<": "cyan", "-": "red", "!": "magenta"}


def summary_line(plan: Plan) -> str:
    s = plan.summary
    return f"Plan: {s['create']} to create, {s['update']} to update, {s['delete']} to delete, {s['retire']} to retire."


def _by_kind(plan: Plan) -> dict[str, list[Change]]:
    groups: dict[str, list[Change]] = defaultdict(list)
    for change in plan.changes:
        groups[change.kind].append(change)
    return groups


def _impact(change: Change) -> str:
    return ", ".join(f"{n} {label}" for label, n in change.impact.items())


# --- text ------------------------------------------------------------------------------------------


class _Painter:
    def __init__(self, colour: bool):
        self.colour = colour

    def __call__(self, text: str, colour: str | None) -> str:
        if not self.colour or not colour:
            return text
        return f"\x1b[{_ANSI[colour]}m{text}\x1b[0m"

    def words(self, line, colour: str) -> str:
        """A diff line with its changed words marked: reversed when in colour, else [-removed-] {+added+}."""
        out = []
        for text, changed in line.segments:
            if not changed:
                out.append(text)
            elif self.colour:
                out.append(f"\x1b[7m{text}\x1b[27m")
            else:
                out.append(f"[-{text}-]" if line.tag == "-" else f"{{+{text}+}}")
        return self(line.tag + "".join(out), colour)


def _text_diff_lines(td: TextDiff, indent: str, paint: _Painter) -> list[str]:
    lines = []
    for hunk in td.hunks:
        if hunk.header:
            lines.append(indent + paint(hunk.header, "cyan"))
        for line in hunk.lines:
            lines.append(indent + paint.words(line, {"-": "red", "+": "green"}.get(line.tag)))
    lines += [indent + f"({note})" for note in td.notes]
    return lines


def _lines(n: int) -> str:
    return f"{n} line" if n == 1 else f"{n} lines"


def _lines_count(td: TextDiff) -> str:
    """The header of a line diff: the texts' lengths; nothing for one line edited (its words are marked)."""
    if td.before_lines <= 1 and td.after_lines <= 1:
        return ""
    return f" {td.before_lines} → {_lines(td.after_lines)}"


def _entry_text(entry: Entry, indent: str, paint: _Painter) -> list[str]:
    if entry.op == "change":
        return [f"{indent}{entry.path}: {fmt(entry.before)} → {fmt(entry.after)}"]
    if entry.op == "add":
        return [indent + paint(f"{entry.path}: + {fmt(entry.after)}", "green")]
    if entry.op == "remove":
        return [indent + paint(f"{entry.path}: - {fmt(entry.before)}", "red")]
    if entry.op == "reorder":
        return [f"{indent}{entry.path}: reordered {fmt(entry.before)} → {fmt(entry.after)}"]
    return [f"{indent}{entry.path}:{_lines_count(entry.text)}", *_text_diff_lines(entry.text, indent + "  ", paint)]


def _attribute_text(path: str, value: Any, indent: str) -> list[str]:
    if isinstance(value, str) and "\n" in value:
        block = value[:-1] if value.endswith("\n") else value
        style = "|" if value.endswith("\n") else "|-"
        # Blank lines keep the indent: a change's lines stay contiguous, a blank line only ever ends one.
        return [f"{indent}{path}: {style}", *(f"{indent}  {visible(line)}" for line in block.split("\n"))]
    return [f"{indent}{path}: {fmt(value)}"]


def _create_text(change: Change, lines: list[str]) -> None:
    """A create's attributes, as `create_attributes` + `_attribute_text` lay them out, in one pass.

    A large first apply is 100,000 creates of a few scalar columns each, so the common leaves (a
    one-line string, an int, a bool, null, in a column without a numeric scale) are formatted here
    directly, each column's line prefix and scale looked up once per kind (`_columns`); anything
    else (numeric columns, maps, lists, multi-line text, the secrets in `fields`) takes the general
    path. tests/test_render.py checks both give the same text."""
    kind = change.kind
    values = change.values
    known = _columns(kind)
    append = lines.append
    for column, value in values.items():
        info = known.get(column)
        if info is None:
            info = known[column] = _column_info(kind, column)
        prefix, scale, quantum = info
        cls = value.__class__
        if quantum is not None and cls is Decimal:  # a price or cost: canonical_decimal with the column's scale
            try:
                append(prefix + _encode_str(format(value.quantize(quantum), "f")))
                continue
            except InvalidOperation:
                pass  # (too many digits for the scale: shown as the general path shows it)
        elif scale is None or cls is bool:
            if cls is str:
                if "\n" not in value:
                    append(prefix + _encode_str(value))
                    continue
            elif cls is int:
                append(prefix + int.__repr__(value))
                continue
            elif cls is bool:
                append(prefix + ("true" if value else "false"))
                continue
            elif value is None:
                append(prefix + "null")
                continue
        for path, leaf in flatten(column, column_value(kind, column, value)):
            lines += _attribute_text(path, leaf, "      ")
    for f in change.fields:
        if f.field not in values:
            for path, leaf in flatten(f.field, f.after):
                lines += _attribute_text(path, leaf, "      ")


@cache
def _columns(kind: str) -> dict[str, tuple[str, int | None, Decimal | None]]:
    """Per kind, the columns `_create_text` met: (line prefix, numeric scale, its quantum when the
    scale is not 0 or None), filled as columns are met."""
    return {}


def _column_info(kind: str, column: str) -> tuple[str, int | None, Decimal | None]:
    scale = _scale(kind, column)
    return f"      {column}: ", scale, _quantum(scale) if scale else None


@cache
def _quantum(scale: int) -> Decimal:
    return Decimal(1).scaleb(-scale)


def _change_text(change: Change, paint: _Painter) -> list[str]:
    marker = MARKERS[change.action]
    note = " (drift: edited outside cplane)" if change.cause == "drift" else ""
    subject = f"{change.kind}/{change.name}"
    lines = [f"  # {subject} {VERBS[change.action]}{note}",
             paint(f"  {marker} {subject}", COLOURS.get(marker)) if paint.colour else f"  {marker} {subject}"]
    if change.action == "create":
        _create_text(change, lines)
    else:
        for entry in field_entries(change):
            lines += _entry_text(entry, "      ", paint)
    if change.reason and change.action in ("retire", "delete"):
        lines.append(f"      reason: {change.reason}")
    if change.impact and change.action not in ("retire",):
        lines.append("      impact: " + _impact(change))
    for violation in change.policy_violations:
        lines.append(paint(f"      policy {violation['policy']} ({violation['severity']}): {violation['message']}",
                           "red" if violation["severity"] == "error" else "yellow"))
    lines.append("")
    return lines


def render_text(plan: Plan, colour: bool = False, compact: bool = False) -> str:
    """The whole plan, every change complete. `compact` counts each kind's creates instead of listing
    them (for `cplane plan --compact`; never the default, never at apply's confirmation prompt)."""
    return "\n".join(_text_lines(plan, colour, compact))


# Lines of text per piece `text_pieces` hands out: large enough that writing them is one call per
# few hundred kilobytes, small enough that the text of 100,000 creates is never held whole.
PIECE_LINES = 2000


def text_pieces(plan: Plan, colour: bool = False, compact: bool = False) -> Iterator[str]:
    """`render_text(plan) + "\n"` in pieces, each ending with a newline, made as they are written:
    a first apply of 100,000 rows prints 36 MB of text, which the CLI streams instead of building
    (and then copying on output) one string. Joined, the pieces are exactly those bytes
    (tests/test_render_diffs.py). A piece is whole blocks (a change's lines) of at least
    PIECE_LINES lines, or the rest."""
    batch: list[str] = []
    for block in _text_blocks(plan, colour, compact):
        batch += block
        if len(batch) >= PIECE_LINES:
            batch.append("")
            yield "\n".join(batch)
            batch = []
    if batch:
        batch.append("")
        yield "\n".join(batch)


def _text_lines(plan: Plan, colour: bool, compact: bool) -> Iterator[str]:
    for block in _text_blocks(plan, colour, compact):
        yield from block


def _text_blocks(plan: Plan, colour: bool, compact: bool) -> Iterator[list[str]]:
    """The text's lines, a list at a time (a change's lines together)."""
    paint = _Painter(colour)
    if plan.changes:
        yield ["cplane will perform the following actions:", ""]
    for kind, changes in _by_kind(plan).items():
        creates = sum(1 for c in changes if c.action == "create")
        if compact and creates:
            yield [paint(f"  + {kind}: {creates} to create (not listed: --compact)", "green"), ""]
        for change in changes:
            if not (compact and change.action == "create"):
                yield _change_text(change, paint)
    tail: list[str] = []
    if plan.unmanaged:
        tail.append(f"Unmanaged rows (not in config, never touched by apply): {len(plan.unmanaged)}")
        for item in plan.unmanaged:
            tail.append(f"  ? {item['kind']}/{item['name']}: {item['reason']}")
        tail.append("")
    tail += scheduled_text(plan)
    if plan.schema_note:
        tail.append(plan.schema_note)
    for warning in plan.warnings:
        tail.append(f"Warning: {warning}")
    for error in plan.errors:
        tail.append(f"Error: {error}")
    tail.append(summary_line(plan) if plan.has_changes else NO_CHANGES)
    yield tail


# --- markdown --------------------------------------------------------------------------------------
#
# Values are code spans. Line diffs are ```diff blocks, which GitHub colours line by line (removed red,
# added green); a code block cannot carry inline formatting, so inside a changed line the words that
# changed are marked the way `git diff --word-diff=plain` marks them: [-removed-] and {+added+}.


def _code(text: str) -> str:
    """An inline code span holding `text` exactly, whatever backticks it contains."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if longest or text.startswith(" ") or text.endswith(" ") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(body: list[str], info: str, indent: str, summary: str | None = None) -> list[str]:
    """A fenced block (longer fence than any backtick run inside), folded in <details> when long."""
    longest = max((len(run) for line in body for run in re.findall(r"`{3,}", line)), default=0)
    ticks = "`" * max(3, longest + 1)
    block = [f"{indent}{ticks}{info}", *(f"{indent}{line}" if line else "" for line in body), f"{indent}{ticks}"]
    if len(body) <= FOLD_LINES:
        return block
    return [f"{indent}<details><summary>{html.escape(summary or _lines(len(body)))}</summary>", "",
            *block, "", f"{indent}</details>"]


def _diff_block(td: TextDiff) -> list[str]:
    body = []
    for hunk in td.hunks:
        if hunk.header:
            body.append(hunk.header)
        for line in hunk.lines:
            body.append(line.tag + "".join(
                (f"[-{t}-]" if line.tag == "-" else f"{{+{t}+}}") if changed else t for t, changed in line.segments))
    body += [f"({note})" for note in td.notes]
    return body


def _entry_markdown(entry: Entry) -> list[str]:
    path = _code(entry.path)
    if entry.op == "change":
        return [f"  - {path}: {_code(fmt(entry.before))} → {_code(fmt(entry.after))}"]
    if entry.op == "add":
        return [f"  - {path}: `+` {_code(fmt(entry.after))}"]
    if entry.op == "remove":
        return [f"  - {path}: `-` {_code(fmt(entry.before))}"]
    if entry.op == "reorder":
        return [f"  - {path}: reordered {_code(fmt(entry.before))} → {_code(fmt(entry.after))}"]
    body = _diff_block(entry.text)
    return [f"  - {path}:{_lines_count(entry.text)}", "",
            *_fence(body, "diff", "    ", f"show the line diff ({_lines(len(body))})"), ""]


def _attribute_markdown(path: str, value: Any) -> list[str]:
    if isinstance(value, str) and "\n" in value:
        block = [visible(line) for line in (value[:-1] if value.endswith("\n") else value).split("\n")]
        return [f"  - {_code(path)}: {_lines(len(block))}", "",
                *_fence(block, "text", "    ", f"show the text ({_lines(len(block))})"), ""]
    return [f"  - {_code(path)}: {_code(fmt(value))}"]


def _change_markdown(change: Change) -> list[str]:
    flag = " **(drift)**" if change.cause == "drift" else ""
    lines = [f"- `{MARKERS[change.action]}` **{change.name}** {VERBS[change.action]}{flag}"]
    if change.action == "create":
        for path, value in create_attributes(change):
            lines += _attribute_markdown(path, value)
    else:
        for entry in field_entries(change):
            lines += _entry_markdown(entry)
    if change.reason and change.action in ("retire", "delete"):
        lines.append(f"  - reason: {change.reason}")
    if change.impact and change.action != "retire":
        lines.append("  - impact: " + _impact(change))
    for violation in change.policy_violations:
        mark = "❌" if violation["severity"] == "error" else "⚠️"
        lines.append(f"  - {mark} policy `{violation['policy']}` ({violation['severity']}): {violation['message']}")
    return lines


def _kind_section(kind: str, changes: list[Change], compact: bool) -> str:
    lines = [f"<details><summary>{kind}: {len(changes)} change(s)</summary>", ""]
    creates = sum(1 for c in changes if c.action == "create")
    if compact and creates:
        lines.append(f"- `+` {creates} to create (not listed: `--compact`)")
    for change in changes:
        if not (compact and change.action == "create"):
            lines += _change_markdown(change)
    lines += ["", "</details>", ""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def render_markdown(plan: Plan, *, artifact: str | None = None, limit: int = MARKDOWN_LIMIT,
                    compact: bool = False) -> str:
    """The plan for a pull-request comment: a summary table, then each kind's changes, complete, folded
    in <details>. When the whole would not fit in a GitHub comment (`limit` characters, with room left
    for the comment's own header and footer), it says so at the top, keeps the kind sections that fit
    whole, names the others, and points to `artifact` (Markdown naming where the full plan is, e.g. a
    link to the workflow run's `cplane-plan` artifact). A section is never cut."""
    head = ["### cplane plan", ""]
    if plan.environment:
        head.append(f"Environment: `{plan.environment}` · config revision `{plan.config_revision or 'unknown'}`")
        head.append("")
    if plan.schema_note:
        head.append(plan.schema_note)
        head.append("")
    if plan.errors:
        head.append("> [!CAUTION]")
        head += [f"> {error}" for error in plan.errors]
        head.append("")
    sections: list[tuple[str, str, bool]] = []  # (label when left out, text, only creates)
    if not plan.changes:
        head.append(f"**{NO_CHANGES}**")
    else:
        head.append(f"**{summary_line(plan)}**")
        head.append("")
        head.append("| kind | create | update | delete | retire | drift |")
        head.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        groups = _by_kind(plan)
        for kind, changes in groups.items():
            counts: dict[str, int] = defaultdict(int)
            for c in changes:
                counts["update" if c.action == "adopt" else c.action] += 1
            drift = sum(1 for c in changes if c.cause == "drift")
            head.append(f"| {kind} | " + " | ".join(str(counts[a]) for a in SUMMARY_ACTIONS) + f" | {drift} |")
        head.append("")
        sections = [(f"{kind}: {len(changes)} change(s)", _kind_section(kind, changes, compact),
                     all(c.action == "create" for c in changes)) for kind, changes in groups.items()]
    if plan.unmanaged:
        body = [f"<details><summary>{len(plan.unmanaged)} unmanaged row(s), never touched</summary>", ""]
        body += [f"- {item['kind']}/{item['name']}: {item['reason']}" for item in plan.unmanaged]
        body += ["", "</details>", ""]
        sections.append((f"{len(plan.unmanaged)} unmanaged row(s)", "\n".join(body) + "\n", True))
    tail = "\n".join(scheduled_markdown(plan)) + "".join(f"- ⚠️ {warning}\n" for warning in plan.warnings)
    head_text = "\n".join(head) + "\n"

    full = head_text + "".join(text for _, text, _ in sections) + tail
    if len(full.rstrip()) + 1 <= limit:
        return full.rstrip() + "\n"
    where = artifact or "the full plan (`cplane plan`, or `cplane plan --format json`)"
    notice = ("> [!WARNING]\n"
              f"> **This plan is too long for a pull-request comment** ({len(full):,} characters; GitHub "
              f"takes at most {GITHUB_COMMENT_LIMIT:,}). Nothing below is cut: the sections that fit are "
              f"shown whole, the others are named at the end. Every change is in {where}.\n\n")
    # Kinds with updates, deletes or retires are what a reviewer must see: they get the room first;
    # creates (and the unmanaged list) next; smaller sections first, so that most kinds show. The sections
    # kept stay in plan order.
    reserve = 200 + len(where) + sum(len(label) + 8 for label, _, _ in sections)
    budget = limit - len(head_text) - len(notice) - len(tail) - reserve
    kept: set[int] = set()
    for i in sorted(range(len(sections)), key=lambda i: (sections[i][2], len(sections[i][1]))):
        if len(sections[i][1]) <= budget:
            kept.add(i)
            budget -= len(sections[i][1])
    shown = "".join(text for i, (_, text, _) in enumerate(sections) if i in kept)
    left = [label for i, (label, _, _) in enumerate(sections) if i not in kept]
    omitted = ""
    if left:
        omitted = ("**Not shown here** (too long for the comment; complete in " + where + "):\n\n"
                   + "".join(f"- {label}\n" for label in left) + "\n")
    return (head_text + notice + shown + omitted + tail).rstrip() + "\n"


def render_json(plan: Plan) -> str:
    from control_plane.plans import planfile  # (imported when used: a no-change plan stays light)

    return planfile.dumps(plan)  # the JSON form is the saved plan's own


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}
