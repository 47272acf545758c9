"""Load config documents (docs/reference.md §2): fast path with yaml-rs, exact positions with ruamel.

Fast path
    Every file is decoded as UTF-8 (a BOM is dropped), checked for characters YAML forbids, and
    parsed with ``yaml_rs.loads`` (YAML 1.2, dates stay strings, duplicate keys are errors, alias
    expansion is capped so a "billion laughs" document is refused in milliseconds).

Error path
    Only when the fast path refuses a file, the file is composed again with ruamel.yaml (YAML 1.2)
    to find the exact 1-based line and column of every problem; when ruamel disagrees with yaml-rs
    the position printed by yaml-rs is used instead. Every message is a single line.

Positions of valid nodes
    ``locate(doc, path)`` re-parses a file lazily with the ruamel round-trip loader (once per file)
    and returns the 1-based line and column of a node, for validation messages.

One YAML version everywhere: 1.2 (``yes``/``on``/``no`` are strings). A ``%YAML`` directive for any
other version is refused. Merge keys (``<<: *anchor``) are honoured on both paths, as ruamel's
round-trip loader does.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml_rs

if TYPE_CHECKING:
    # ruamel.yaml only where a file is composed again (a problem's position, `locate`, dumping):
    # the fast path (yaml-rs) never imports it.
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.nodes import Node, ScalarNode

__all__ = [
    "ALIAS_LIMITS",
    "Document",
    "LoadError",
    "LoadResult",
    "clear_locate_cache",
    "dump_documents",
    "load_bytes",
    "load_file",
    "load_overlay",
    "load_text",
    "load_tree",
    "locate",
]

YAML_SUFFIXES = (".yaml", ".yml")

#: Cap on alias expansion on the fast path. A legitimate config replays far fewer events through
#: aliases; a "billion laughs" document hits the cap in a few tens of milliseconds.
MAX_ALIAS_EVENTS = 500_000
ALIAS_LIMITS = yaml_rs.AliasLimits(
    max_total_replayed_events=MAX_ALIAS_EVENTS,
    max_replay_stack_depth=64,
)

#: Files whose position trees are kept for ``locate`` (LRU).
LOCATE_CACHE_SIZE = 64

# A document that is certainly alone and certainly not a list: prepended to every text so that
# yaml-rs returns a list ``[0, doc1, doc2, ...]`` for one document or more, and ``0`` for none
# (yaml-rs returns a single document as itself, so a one-document file holding a list would
# otherwise look like several documents).
_SENTINEL = "--- 0\n...\n"
_SENTINEL_LINES = _SENTINEL.count("\n")

# Characters outside YAML's printable set (c-printable); surrogates cannot survive UTF-8 decoding.
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]")
_ASCII_OK = bytes(range(0x20, 0x7F)) + b"\t\n\r"
_DOC_MARKER = re.compile(r"(---|\.\.\.)(?=[ \t\r\n]|\Z)")
_DOC_MARKER_AFTER_NEWLINE = re.compile(r"\n(---|\.\.\.)(?=[ \t\r\n]|\Z)")  # ~7x faster than ^ + re.M
_CONTENT_LINE = re.compile(r"^(?!%)[ \t]*[^ \t\r\n#]", re.MULTILINE)
_YAML_DIRECTIVE = re.compile(r"^%YAML[ \t]+(\S+)", re.MULTILINE)
_RS_POSITION = re.compile(r"at line (\d+), column (\d+)")


# ---------------------------------------------------------------------------------------------
# Data model


@dataclass
class Document:
    """One YAML document of a file; ``data`` is whatever it holds (normally a mapping)."""

    file: Path
    index: int  # 0-based position in the file's stream of documents (empty ones count)
    data: Any
    line: int  # 1-based line where the document starts ("---", else its first content line)


@dataclass
class LoadError:
    file: Path
    line: int  # 1-based
    col: int  # 1-based
    message: str  # one line

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def extend(self, other: LoadResult) -> None:
        self.documents.extend(other.documents)
        self.errors.extend(other.errors)


# ---------------------------------------------------------------------------------------------
# Public loading API


def load_tree(root: Path, exclude_dirs: Sequence[str] = ("environments",)) -> LoadResult:
    """Load every ``*.yaml``/``*.yml`` file under ``root``, recursively, in path order.

    Top-level sub-folders named in ``exclude_dirs`` (the environment overlays) are skipped, and so
    are hidden files and folders (names starting with ``.``: editor and VCS droppings).
    """
    root = Path(root)
    result = LoadResult()
    if not root.is_dir():
        result.errors.append(LoadError(root, 1, 1, "config directory not found"))
        return result
    for path in _yaml_files(root, tuple(exclude_dirs)):
        result.extend(load_file(path))
    return result


def load_overlay(path: Path) -> LoadResult:
    """Load an environment overlay file (``config/environments/<env>.yaml``)."""
    return load_file(path)


def load_file(path: Path) -> LoadResult:
    """Load all documents of one file. Never raises for bad content; problems are LoadErrors."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return LoadResult(errors=[LoadError(path, 1, 1, f"cannot read file: {exc.strerror or exc}")])
    return load_bytes(raw, path)


def load_bytes(raw: bytes, path: Path) -> LoadResult:
    """Load documents from the raw content of a file (``path`` is only used in results)."""
    text, error = _decode(raw, path)
    if error is not None:
        return LoadResult(errors=[error])
    return load_text(text, path)


def load_text(text: str, path: Path) -> LoadResult:
    """Load documents from already-decoded text (``path`` is only used in results)."""
    path = Path(path)
    if text.startswith("\ufeff"):
        text = text[1:]
    problem = _check_text(text, path)
    if problem is not None:
        return LoadResult(errors=[problem])
    try:
        parsed = yaml_rs.loads(
            _SENTINEL + text,
            parse_datetime=False,
            alias_limits=ALIAS_LIMITS,
            duplicate_key_policy=yaml_rs.DuplicateKeyPolicy.Error,
        )
    except (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError):
        raise
    except BaseException as exc:  # YAMLDecodeError, and pyo3's PanicException (a BaseException)
        return LoadResult(errors=_diagnose(text, path, exc))

    if isinstance(parsed, list):
        if not parsed or parsed[0] != 0:  # cannot happen; never trust it silently
            return LoadResult(errors=[LoadError(path, 1, 1, "internal error: unexpected parser result")])
        datas = parsed[1:]
    else:
        datas = []
    if "<<" in text:
        datas = [_apply_merges(d, {}) for d in datas]

    starts = _doc_starts(text)
    if len(starts) != len(datas):
        starts = _doc_starts_ruamel(text, len(datas))
    docs = [
        Document(file=path, index=i, data=data, line=starts[i])
        for i, data in enumerate(datas)
        if data is not None
    ]
    if _NUL_ESCAPE.search(text):  # cheap gate: only an escape in a quoted scalar can make a NUL
        return LoadResult(documents=docs, errors=_nul_errors(docs))
    return LoadResult(documents=docs)


_NUL_ESCAPE = re.compile(r"\\(?:0|x00|u0000|U00000000)")


def _nul_errors(docs: list[Document]) -> list[LoadError]:
    """Strings (keys or values) holding a NUL character: valid YAML, but PostgreSQL text cannot
    store it, so apply would fail on it; refuse it here, where it is."""
    errors = []
    for doc in docs:
        stack: list[tuple[Any, tuple]] = [(doc.data, ())]
        while stack:
            node, at = stack.pop()
            if isinstance(node, str):
                bad = "\x00" in node
            elif isinstance(node, dict):
                bad = False
                for key, value in node.items():
                    if isinstance(key, str) and "\x00" in key:
                        stack.append((key, (*at, key)))
                    else:
                        stack.append((value, (*at, key)))
            else:
                bad = False
                if isinstance(node, list):
                    stack.extend((value, (*at, i)) for i, value in enumerate(node))
            if bad:
                try:
                    line, col = locate(doc, at)
                except Exception:  # a locator failure must never hide the error itself
                    line, col = doc.line, 1
                errors.append(LoadError(doc.file, line, col, "text holds a NUL character (\\0), which the database cannot store"))
    return sorted(errors, key=lambda e: (e.line, e.col))


# ---------------------------------------------------------------------------------------------
# Files, decoding and pre-checks


def _yaml_files(root: Path, exclude_dirs: tuple[str, ...]) -> list[Path]:
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        dirnames[:] = [
            d for d in dirnames if not d.startswith(".") and not (rel_dir == Path(".") and d in exclude_dirs)
        ]
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(YAML_SUFFIXES):
                continue
            rel = (rel_dir / name).as_posix()
            found.append((rel, here / name))
    found.sort(key=lambda item: item[0])
    return [p for _, p in found]


def _decode(raw: bytes, path: Path) -> tuple[str, LoadError | None]:
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        bad = exc.start
        line = raw.count(b"\n", 0, bad) + 1
        line_start = raw.rfind(b"\n", 0, bad) + 1
        col = len(raw[line_start:bad].decode("utf-8", errors="replace")) + 1
        if raw.startswith(b"\xef\xbb\xbf") and line == 1:
            col -= 1
        return "", LoadError(path, line, col, f"file is not valid UTF-8 text (byte 0x{raw[bad]:02x})")


def _check_text(text: str, path: Path) -> LoadError | None:
    if text.isascii():
        if not text.encode("ascii").translate(None, _ASCII_OK):
            return _check_directives(text, path)
    match = _BAD_CHAR.search(text)
    if match is None:
        return _check_directives(text, path)
    line, col = _line_col(text, match.start())
    char = match.group()
    what = "NUL byte" if char == "\x00" else f"control character U+{ord(char):04X}"
    return LoadError(path, line, col, f"invalid character: {what} is not allowed in YAML (binary file?)")


def _check_directives(text: str, path: Path) -> LoadError | None:
    if "%YAML" not in text:
        return None
    for match in _YAML_DIRECTIVE.finditer(text):
        if match.group(1) != "1.2":
            line, col = _line_col(text, match.start())
            return LoadError(
                path, line, col, f"unsupported YAML version {match.group(1)!r}: only YAML 1.2 is accepted"
            )
    return None


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _doc_starts(text: str) -> list[int]:
    """1-based start line of every document in the stream, by scanning for markers.

    In YAML 1.2 a ``---``/``...`` at column 0 followed by a blank is always a marker (it may not
    appear inside any scalar), so a scan is exact for files the parser accepted. A document starts
    at its ``---``; a bare document (at the top of the stream or after ``...``) at its first line
    that is not blank, a comment or a directive.
    """
    starts: list[int] = []
    counted_to, line = 0, 1

    def line_of(offset: int) -> int:
        nonlocal counted_to, line
        line += text.count("\n", counted_to, offset)
        counted_to = offset
        return line

    open_doc = False
    pos = 0  # where the text not yet examined starts (always a line start)
    first = _DOC_MARKER.match(text)
    markers = itertools.chain([first] if first else [], _DOC_MARKER_AFTER_NEWLINE.finditer(text))
    for marker in markers:
        if not open_doc:
            bare = _CONTENT_LINE.search(text, pos, marker.start(1))
            if bare is not None:
                starts.append(line_of(bare.start()))
        if marker.group(1) == "---":
            starts.append(line_of(marker.start(1)))
            open_doc = True
        else:
            open_doc = False
        end = text.find("\n", marker.end())
        pos = len(text) if end < 0 else end + 1
    if not open_doc:
        bare = _CONTENT_LINE.search(text, pos)
        if bare is not None:
            starts.append(line_of(bare.start()))
    return starts


def _doc_starts_ruamel(text: str, count: int) -> list[int]:
    """Fallback when the scan disagrees with the parser: document starts from ruamel's events."""
    from ruamel.yaml.events import DocumentStartEvent

    starts: list[int] = []
    try:
        for event in _ruamel().parse(text):
            if isinstance(event, DocumentStartEvent):
                starts.append(event.start_mark.line + 1)
    except Exception:  # best effort only; the data already parsed fine
        pass
    if len(starts) != count:
        starts = [1] * count
    return starts


# ---------------------------------------------------------------------------------------------
# Merge keys on the fast path (yaml-rs keeps "<<" as a plain key; ruamel merges)


def _apply_merges(node: Any, memo: dict[int, Any]) -> Any:
    if isinstance(node, dict):
        key = id(node)
        if key in memo:
            return memo[key]
        out: dict[Any, Any] = {}
        memo[key] = out
        for k, v in node.items():
            if k != "<<":
                out[k] = _apply_merges(v, memo)
        if "<<" in node:
            sources = node["<<"]
            if isinstance(sources, dict):
                sources = [sources]
            if isinstance(sources, list) and all(isinstance(s, dict) for s in sources):
                for source in sources:  # earlier sources win, own keys win over all
                    for k, v in _apply_merges(source, memo).items():
                        out.setdefault(k, v)
            else:  # not mergeable: keep it as data, the validator reports the odd key
                out["<<"] = _apply_merges(node["<<"], memo)
        return out
    if isinstance(node, list):
        return [_apply_merges(item, memo) for item in node]
    return node


# ---------------------------------------------------------------------------------------------
# Error path: exact positions for a file the fast path refused


def _ruamel() -> YAML:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    return yaml


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _diagnose(text: str, path: Path, exc: BaseException) -> list[LoadError]:
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    rs_message = str(exc)
    if "recursion limit exceeded" in rs_message:
        # yaml-rs already knows where: ruamel's scanner is quadratic on deep flow collections
        # (5,000 nested '[' took seconds) before it gives up with a RecursionError anyway.
        return [_from_rs_message(text, path, rs_message, default="YAML syntax error: nesting too deep")]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. ReusedAnchorWarning: legal YAML
            nodes = list(_ruamel().compose_all(text))
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        if mark is not None:
            return [
                LoadError(path, mark.line + 1, mark.column + 1, f"YAML syntax error: {_one_line(problem)}")
            ]
        return [_from_rs_message(text, path, rs_message)]
    except RecursionError:
        return [_from_rs_message(text, path, rs_message, default="YAML syntax error: nesting too deep")]
    except (YAMLError, Exception):  # the error path must never raise
        return [_from_rs_message(text, path, rs_message)]

    try:
        duplicates = _find_duplicates(nodes, path)
    except RecursionError:
        duplicates = []
    if duplicates:
        return duplicates
    if "alias" in rs_message and "limit" in rs_message:
        line, col = _alias_overflow_position(text)
        return [
            LoadError(
                path,
                line,
                col,
                f"too many alias expansions (more than {MAX_ALIAS_EVENTS} nodes): refusing a possible "
                "'billion laughs' document",
            )
        ]
    return [_from_rs_message(text, path, rs_message)]


def _from_rs_message(text: str, path: Path, message: str, default: str | None = None) -> LoadError:
    """Build an error from yaml-rs's message ("YAML parse error at line 2, column 2\\n...\\nwhy")."""
    lines = [ln for ln in message.splitlines() if ln.strip()]
    match = _RS_POSITION.search(message)
    line, col = 1, 1
    if match is not None:
        line = max(1, int(match.group(1)) - _SENTINEL_LINES)
        col = max(1, int(match.group(2)))
    if default is not None:
        why = default
    elif match is not None and len(lines) > 1:
        why = f"YAML syntax error: {_one_line(lines[-1])}"
    elif match is not None:
        why = "YAML syntax error"
    else:
        why = f"YAML error: {_one_line(message)}" if message else "YAML error"
    line = min(line, text.count("\n") + 1)
    return LoadError(path, line, col, why)


def _key_identity(node: ScalarNode) -> Any:
    """What a scalar key means, so ``1`` and ``0x1`` collide as they do for yaml-rs."""
    if node.tag.endswith((":int", ":float", ":bool", ":null")):
        try:
            return ("v", yaml_rs.loads(f"k: {node.value}\n", parse_datetime=False)["k"])
        except Exception:
            pass
    return ("s", node.value)


def _find_duplicates(docs: Iterable[Node | None], path: Path) -> list[LoadError]:
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    errors: list[LoadError] = []
    seen: set[int] = set()
    stack: list[Node] = [d for d in docs if d is not None][::-1]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[Any, ScalarNode] = {}
            for key, _value in node.value:
                if isinstance(key, ScalarNode) and not (key.tag.endswith(":merge") or key.value == "<<"):
                    ident = _key_identity(key)
                    if ident in first:
                        where = first[ident].start_mark.line + 1
                        errors.append(
                            LoadError(
                                path,
                                key.start_mark.line + 1,
                                key.start_mark.column + 1,
                                f"duplicate key {_quote(key.value)} (first defined at line {where})",
                            )
                        )
                    else:
                        first[ident] = key
            children = [n for pair in node.value for n in pair]
            stack.extend(reversed(children))
        elif isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))
    errors.sort(key=lambda e: (e.line, e.col))
    return errors


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alias_overflow_position(text: str) -> tuple[int, int]:
    """Position of the alias use where expanding the stream crosses the alias limit."""
    from ruamel.yaml.events import (
        AliasEvent,
        CollectionEndEvent,
        CollectionStartEvent,
        ScalarEvent,
    )

    sizes: dict[str, int] = {}  # anchor -> expanded number of nodes
    stack: list[list[Any]] = []  # open collections: [anchor, expanded size so far]
    replayed = 0
    first_alias: tuple[int, int] | None = None
    try:
        events = list(_ruamel().parse(text))
    except Exception:  # best effort
        events = []
    try:
        for event in events:
            if isinstance(event, CollectionStartEvent):
                stack.append([event.anchor, 1])
                continue
            if isinstance(event, ScalarEvent):
                n = 1
                if event.anchor:
                    sizes[event.anchor] = 1
            elif isinstance(event, AliasEvent):
                n = sizes.get(event.anchor, 1)
                replayed += n
                pos = (event.start_mark.line + 1, event.start_mark.column + 1)
                first_alias = first_alias or pos
                if replayed > MAX_ALIAS_EVENTS:
                    return pos
            elif isinstance(event, CollectionEndEvent) and stack:
                anchor, n = stack.pop()
                if anchor:
                    sizes[anchor] = n
            else:
                continue
            if stack:
                stack[-1][1] += n
    except Exception:  # best effort
        pass
    return first_alias or (1, 1)


# ---------------------------------------------------------------------------------------------
# Positions of nodes in documents that loaded fine


_UNSET: Any = object()


class _FileTrees:
    """One file's text and its ruamel round-trip trees, parsed document by document on demand.

    Documents cannot share anchors, so a document is parsed from its own slice of the text: in a
    10 MB taxonomy, locating an error in one industry costs that industry, not the whole file.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = _doc_starts(text)
        self.docs: dict[int, tuple[Any, int]] = {}  # index -> (tree, line offset)
        self.whole: Any = _UNSET  # every document, when slicing could not be trusted
        self.lock = threading.Lock()

    def tree(self, index: int, line: int) -> tuple[Any, int] | None:
        with self.lock:
            if index not in self.docs:
                self.docs[index] = self._parse_one(index, line)
            return self.docs[index]

    def _parse_one(self, index: int, line: int) -> tuple[Any, int] | None:
        if index < len(self.starts) and self.starts[index] == line:
            begin = _offset_of_line(self.text, line)
            stop = len(self.text)
            if index + 1 < len(self.starts):
                stop = _offset_of_line(self.text, self.starts[index + 1], begin, line)
            trees = _parse_for_positions(self.text[begin:stop])
            if trees is not None and len(trees) == 1:
                return trees[0], line - 1
        if self.whole is _UNSET:
            self.whole = _parse_for_positions(self.text)
        if self.whole is None or index >= len(self.whole):
            return None
        return self.whole[index], 0


def _offset_of_line(text: str, line: int, offset: int = 0, at_line: int = 1) -> int:
    """Character offset where 1-based ``line`` starts (counting from ``offset`` at ``at_line``)."""
    for _ in range(line - at_line):
        offset = text.index("\n", offset) + 1
    return offset


class _PositionCache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[Path, tuple[tuple[int, int], _FileTrees | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, file: Path) -> _FileTrees | None:
        try:
            stat = file.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            return None
        with self._lock:
            hit = self._data.get(file)
            if hit is not None and hit[0] == stamp:
                self._data.move_to_end(file)
                return hit[1]
        try:
            entry: _FileTrees | None = _FileTrees(file.read_bytes().decode("utf-8-sig"))
        except (OSError, UnicodeDecodeError):
            entry = None
        with self._lock:
            self._data[file] = (stamp, entry)
            self._data.move_to_end(file)
            while len(self._data) > self._size:
                self._data.popitem(last=False)
        return entry

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def _parse_for_positions(text: str) -> list[Any] | None:
    try:
        yaml = _ruamel()
        yaml.allow_duplicate_keys = True  # the fast path already vouched for the file
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return list(yaml.load_all(text))
    except Exception:  # positions are best effort, never an exception
        return None


_positions = _PositionCache(LOCATE_CACHE_SIZE)


def clear_locate_cache() -> None:
    _positions.clear()


def locate(doc: Document, path: tuple[str | int, ...], at_value: bool = False) -> tuple[int, int]:
    """1-based (line, col) of the node at ``path`` inside ``doc``.

    A mapping entry points at its key (at its value with ``at_value``, for messages about the value);
    a list item at the item. When the path does not exist
    (a missing field), the deepest node that does exist is returned. The document is parsed once
    (ruamel round-trip, YAML 1.2) and cached; if it cannot be, the document start is returned.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    fallback = (doc.line, 1)
    entry = _positions.get(Path(doc.file))
    found = entry.tree(doc.index, doc.line) if entry is not None else None
    if found is None:
        return fallback
    node, offset = found
    pos = _own_position(node) or fallback
    last = len(path) - 1
    for depth, step in enumerate(path):
        if isinstance(node, CommentedMap):
            step_found = _map_step(node, step, at_value and depth == last)
            if step_found is None:
                break
            pos, node = step_found
        elif isinstance(node, CommentedSeq) and isinstance(step, int) and not isinstance(step, bool):
            if not -len(node) <= step < len(node):
                break
            index = step % len(node)
            try:
                line, col = node.lc.item(index)
                pos = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            node = node[index]
        else:
            break
    if pos is fallback:
        return pos
    return pos[0] + offset, pos[1]


def _own_position(node: Any) -> tuple[int, int] | None:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return None
    return lc.line + 1, lc.col + 1


def _map_step(node: CommentedMap, step: Any, at_value: bool = False) -> tuple[tuple[int, int], Any] | None:
    from ruamel.yaml.comments import CommentedMap

    try:
        if step not in node:
            return None
    except TypeError:  # unhashable
        return None
    holder = node
    if step not in node.lc.data:  # merged in through "<<": point into the anchored mapping
        for item in getattr(node, "merge", None) or []:
            source = item[1] if isinstance(item, tuple) else item  # ruamel <0.19: (index, map)
            if isinstance(source, CommentedMap) and step in source:
                holder = source
                break
    try:
        line, col = holder.lc.value(step) if at_value else holder.lc.key(step)
        pos = (line + 1, col + 1)
    except (KeyError, TypeError, AttributeError):
        pos = _own_position(holder) or (1, 1)
    return pos, node[step]


# ---------------------------------------------------------------------------------------------
# Dumping (cplane export)


def dump_documents(docs: list[dict], header: str | None = None) -> str:
    """Write documents as block-style YAML 1.2, each starting with ``---``.

    ``header`` becomes leading comment lines. Keys keep insertion order, no anchors are emitted
    for shared objects, and strings containing newlines are written as literal blocks (``|``).
    """
    from ruamel.yaml import YAML

    yaml = None
    out = StringIO()
    if header:
        for line in header.splitlines() or [""]:
            out.write(f"# {line}".rstrip() + "\n")
    for doc in docs:
        fast = _fast_dump(doc)
        if fast is not None:
            out.write(fast)
            continue
        if yaml is None:
            yaml = YAML(typ="rt")
            yaml.default_flow_style = False
            yaml.width = 4096
            yaml.indent(mapping=2, sequence=4, offset=2)
            yaml.representer.ignore_aliases = lambda data: True
        out.write("---\n")
        yaml.dump(_to_round_trip(doc), out)
    return out.getvalue()


def _fast_dump(doc: dict) -> str | None:
    """yaml-rs's emitter (the same block style, ~100x faster than ruamel), kept only when reading
    its output back gives the document again; None: ruamel writes it."""
    if _has_multiline(doc):
        return None  # literal blocks exactly as ruamel writes them (prompts: few, and read by people)
    try:
        text = yaml_rs.dumps(doc)
        # Read back both ways: a string that another YAML reader would take for a date goes to ruamel.
        if yaml_rs.loads(text, parse_datetime=False) != doc or yaml_rs.loads(text) != doc:
            return None
    except Exception:  # noqa: BLE001 (any failure of the fast emitter: the exact one writes it)
        return None
    if not text.startswith("---"):
        text = "---\n" + text
    return text if text.endswith("\n") else text + "\n"


def _has_multiline(value: Any) -> bool:
    if isinstance(value, str):
        return "\n" in value
    if isinstance(value, dict):
        return any(_has_multiline(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_multiline(v) for v in value)
    return False


def _to_round_trip(value: Any) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import LiteralScalarString

    if isinstance(value, dict):
        cm = CommentedMap()
        for k, v in value.items():
            cm[k] = _to_round_trip(v)
        return cm
    if isinstance(value, list | tuple):
        return CommentedSeq(_to_round_trip(v) for v in value)
    if isinstance(value, str) and "\n" in value and _literal_safe(value):
        return LiteralScalarString(value)
    return value


def _literal_safe(value: str) -> bool:
    # A literal block cannot carry trailing spaces on a line, a leading blank on its first line,
    # or "\r"; such strings stay double-quoted (which round-trips exactly).
    if "\r" in value or value[:1] in (" ", "\t"):
        return False
    return not any(line != line.rstrip(" \t") for line in value.split("\n"))
