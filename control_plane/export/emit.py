"""A YAML writer for the one shape export writes: documents of mappings, sequences and scalars.

Why our own: ruamel (the careful emitter) costs ~6 ms per document with multi-line text (prompts,
templates) and ~100x yaml-rs's time on large ones; yaml-rs's emitter cannot write literal blocks.
This writer produces the same block style as the config in the repo (mappings indented by 2,
sequence dashes indented by 2 under their key, multi-line text as literal blocks `|`) and is
conservative about scalars: a string is written plain only when it starts with an ASCII letter,
holds only characters that can never start a comment, a mapping or a flow collection, and is not
a word some YAML reader takes for a boolean or null; anything else is double-quoted with escapes.
So no plain scalar here can read back as a number, a date, a boolean or null, under YAML 1.2 or
1.1 rules.

Every document is parsed back with yaml-rs (as the loader parses config) and compared with the
data; `dump` returns None when they differ, and the caller writes that document with the careful
emitter instead. A wrong file is never written.
"""

from __future__ import annotations

import re
from typing import Any

import yaml_rs

# Plain scalars: a letter first (yaml-rs reads `_0` as the integer 0), then letters, digits and a few punctuation characters that
# mean nothing in a block context, never a space last. ":" and "#" are left out altogether (": "
# starts a mapping value, " #" a comment), and so is every non-ASCII character (some are line
# breaks or invisible to some readers; double quotes keep them exact).
_PLAIN = re.compile(r"[A-Za-z](?:[A-Za-z0-9 _./@()+,'=-]*[A-Za-z0-9_./@()+,'=-])?")
# Words that YAML 1.1 or 1.2 readers take for booleans or null when plain (any case).
_RESERVED = frozenset({"true", "false", "null", "yes", "no", "on", "off", "y", "n"})
# Characters a double-quoted scalar must escape beyond `"` and `\`: C0 controls, DEL, C1
# controls, line and paragraph separators, the BOM, surrogates and the two non-characters.
_ESCAPE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff\"\\\\]")
_NAMED = {"\0": "\\0", "\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f",
          "\r": "\\r", "\x1b": "\\e", '"': '\\"', "\\": "\\\\", "\x85": "\\N", "\xa0": "\\_",
          "\u2028": "\\L", "\u2029": "\\P"}
# Text a literal block can hold exactly: printable characters and tabs, line feeds as line breaks
# (a carriage return or any control character needs the escapes of a double-quoted scalar).
_LITERAL_BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def _escape_char(match: re.Match) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def quoted(text: str) -> str:
    """A double-quoted YAML scalar holding exactly `text`."""
    return '"' + _ESCAPE.sub(_escape_char, text) + '"'


def scalar(value: Any) -> str:
    """One scalar on one line (strings with line breaks are double-quoted here; see `_literal`)."""
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and (len(value) > 5 or value.lower() not in _RESERVED):
            return value
        return quoted(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        return text if ("." in text or "e" in text) else text + ".0"
    raise TypeError(f"cannot write a {type(value).__name__} as YAML")


def _literal(text: str, indent: int) -> list[str] | None:
    """`|` header suffix and content lines of `text` as a literal block at `indent`, or None when
    a literal block cannot hold it exactly (control characters, or no visible character at all)."""
    if not text.strip(" \n") or _LITERAL_BAD.search(text):
        return None
    body = text.rstrip("\n")
    trailing = len(text) - len(body)
    chomp = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    # An explicit indentation indicator when the first line starts with a space or is empty (the
    # reader would otherwise take the indentation from that line, or from a later one).
    header = "|" + ("2" if text[0] in " \n" else "") + chomp
    pad = " " * indent
    lines = [header]
    lines.extend(pad + line if line else "" for line in body.split("\n"))
    lines.extend("" for _ in range(trailing - 1))
    return lines


def _value(value: Any, indent: int, out: list[str], prefix: str) -> None:
    """`prefix` (e.g. "  key:" or "  -") followed by `value`, nested content at `indent`."""
    if isinstance(value, dict):
        if not value:
            out.append(prefix + " {}")
            return
        out.append(prefix)
        _mapping(value, indent, out)
    elif isinstance(value, list | tuple):
        if not value:
            out.append(prefix + " []")
            return
        out.append(prefix)
        _sequence(value, indent, out)
    elif isinstance(value, str) and "\n" in value:
        lines = _literal(value, indent)
        if lines is None:
            out.append(prefix + " " + quoted(value))
        else:
            out.append(prefix + " " + lines[0])
            out.extend(lines[1:])
    else:
        out.append(prefix + " " + scalar(value))


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"mapping key {key!r} is not a string")
    return scalar(key)


def _mapping(mapping: dict, indent: int, out: list[str]) -> None:
    pad = " " * indent
    for key, value in mapping.items():
        _value(value, indent + 2, out, pad + _key(key) + ":")


def _sequence(items: list | tuple, indent: int, out: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, dict) and item:
            # The item's first key shares the dash's line: "- key: value".
            start = len(out)
            _mapping(item, indent + 2, out)
            out[start] = pad + "- " + out[start][indent + 2:]
        else:
            _value(item, indent + 2, out, pad + "-")


def emit(doc: dict) -> str:
    """One document, starting with `---`, in block style (no check: see `dump`)."""
    out = ["---"]
    _mapping(doc, 0, out)
    out.append("")
    return "\n".join(out)


def _reads_back(text: str, doc: dict, dates: bool = False) -> bool:
    """Parsing `text` as the loader does (dates kept as strings) gives `doc`. `dates`: read with
    timestamps parsed instead, so that a plain scalar other readers take for a date fails the
    comparison (yaml-rs's emitter writes 2024-01-01 plain; equal with dates parsed implies equal
    the loader's way). Not for this writer, which never writes a digit-first scalar plain (and
    yaml-rs parses even a quoted "2024-01-01" as a date when asked to)."""
    return yaml_rs.loads(text, parse_datetime=dates) == doc


def dump(doc: dict) -> str | None:
    """`emit(doc)` when parsing it back gives `doc` again, else None (write it another way)."""
    try:
        text = emit(doc)
        if not _reads_back(text, doc):
            return None
    except Exception:  # noqa: BLE001 (any failure here: the careful emitter writes the document)
        return None
    return text


def _dump_rs(doc: dict) -> str | None:
    """yaml-rs's emitter (C speed), kept when it reads back and holds no text it wrote as an
    escaped one-liner (it writes text ending in a line break as "...\\n": this writer's literal
    blocks read better)."""
    try:
        text = yaml_rs.dumps(doc)
        if "\\n" in text or not _reads_back(text, doc, dates=True):
            return None
    except Exception:  # noqa: BLE001 (any failure of the fast emitter: the next one writes it)
        return None
    if not text.startswith("---"):
        text = "---\n" + text
    return text if text.endswith("\n") else text + "\n"


def render(doc: dict, header: str | None = None) -> str:
    """One document as a file's text: yaml-rs, else this writer, each checked by reading it back;
    else the careful emitter (ruamel, through the loader's dump_documents)."""
    text = _dump_rs(doc) or dump(doc)
    if text is None:
        from control_plane.config.loader import dump_documents

        # Checked too: ruamel writes some control characters raw and NEL inside literal blocks.
        text = dump_documents([doc], header=header)
        body = text[text.index("---"):] if "---" in text else text
        if not _reads_back(body, doc):
            raise ValueError("no YAML writer reproduces this document exactly")
        return text
    if header:
        text = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines() or [""]) + text
    return text
