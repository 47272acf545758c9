"""The plain data validation produces: a ConfigSet of ConfigObjects, and Issues with positions.

Shared by every check (config/validate.py, its cross-object checks in prompt_checks and schedule,
the policies, state's column limits) without importing validation itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from control_plane.config.loader import Document, locate

PREVENT_DESTROY = "cplane/prevent-destroy"


@dataclass(frozen=True, order=True)
class Issue:
    file: str
    line: int
    col: int
    kind: str
    name: str
    message: str

    def format(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.kind}/{self.name}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "kind": self.kind,
            "name": self.name,
            "message": self.message,
        }


@dataclass
class ConfigObject:
    kind: str
    name: str
    spec: BaseModel
    labels: dict[str, str]
    annotations: dict[str, str]
    doc: Document
    raw_spec: dict[str, Any]
    # Spec paths set by an overlay patch -> (the overlay document, the path there): what a value
    # that came from a patch is reported at.
    origins: dict[tuple, tuple[Document, tuple]] = field(default_factory=dict)
    # Top-level spec fields (as written) whose values failed their schema: the object was built
    # without them so that its other checks still run; checks skip issues about these fields.
    failed: frozenset[str] = frozenset()
    # Its window (metadata.effectiveFrom/Until) and schedule entries (config.schedule); None: timeless.
    timing: Any = None

    @property
    def prevent_destroy(self) -> bool:
        return self.annotations.get(PREVENT_DESTROY, "").lower() == "true"

    def where(self, path: tuple) -> tuple[Document, tuple]:
        """The document and path that supplied the value at `path` (which starts with "spec")."""
        if self.origins and path[:1] == ("spec",):
            rest = path[1:]
            for cut in range(len(rest), 0, -1):
                hit = self.origins.get(rest[:cut])
                if hit is not None:
                    return hit[0], (*hit[1], *rest[cut:])
        return self.doc, path


@dataclass
class ConfigSet:
    root: Path
    environment: str | None
    objects: dict[str, dict[str, ConfigObject]] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    _loaded: object | None = field(default=None, repr=False)
    # When derived from another ConfigSet: the objects this one validated itself (others were reused).
    own_objects: set[tuple[str, str]] | None = field(default=None, repr=False)
    # Objects whose spec could not be built even without their failed fields (a required field is
    # wrong): spec is None; checks that read the raw spec (references) still cover them.
    rejected: list[ConfigObject] = field(default_factory=list, repr=False)
    # Violations of warning-severity policies: shown, never failing.
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    def of_kind(self, kind: str) -> dict[str, ConfigObject]:
        return self.objects.get(kind, {})

    def names(self, kind: str) -> list[str]:
        """Every name declared for `kind`, objects with errors included (a reference to an object
        that has errors of its own is not also an unknown reference)."""
        names = list(self.of_kind(kind))
        names.extend(o.name for o in self.rejected if o.kind == kind and o.name not in names)
        return names


class _Reporter:
    def __init__(self):
        self.issues: list[Issue] = []

    def at(self, doc: Document, path: tuple, kind: str, name: str, message: str, at_value: bool = False) -> None:
        self.issues.append(issue_at(doc, path, kind, name, message, at_value=at_value))

    def raw(self, file: Path, line: int, col: int, kind: str, name: str, message: str) -> None:
        self.issues.append(_issue(file, line, col, kind, name, message))

    @staticmethod
    def rel(path: Path) -> str:
        """A file as messages name it (relative to the working directory where it can be)."""
        return rel(path)

    def on(self, obj: ConfigObject, path: tuple, message: str, at_value: bool = True, skip_failed: bool = True) -> None:
        """A problem of `obj` at spec `path`, reported where the value was written (the overlay
        patch that set it, if one did); dropped when it is about a field that already failed and
        the check read the spec model (where that field has its default, not what was written)."""
        if skip_failed and obj.failed and len(path) > 1 and path[0] == "spec" and path[1] in obj.failed:
            return
        doc, where = obj.where(path)
        self.issues.append(issue_at(doc, where, obj.kind, obj.name, message, at_value=at_value))


def issue_at(doc: Document, path: tuple, kind: str, name: str, message: str, at_value: bool = False) -> Issue:
    """The Issue of a problem found at `path` inside `doc` (for checks run outside this module too)."""
    try:
        line, col = locate(doc, path, at_value=at_value)
    except Exception:  # a locator failure must never hide the error itself
        line, col = doc.line, 1
    return _issue(doc.file, line, col, kind, name, message)


def _issue(file: Path, line: int, col: int, kind: str, name: str, message: str) -> Issue:
    return Issue(rel(file), line, col, _clip(kind, 100), _clip(name, 200), _clip(message, 500))


def rel(path: Path) -> str:
    """A file as messages name it (relative to the working directory where it can be)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def sorted_issues(issues) -> list[Issue]:
    """Every issue once, in file order: the form ConfigSet.issues always has."""
    return sorted(set(issues), key=lambda i: (i.file, i.line, i.col, i.message))


def _clip(text: str, limit: int) -> str:
    """Messages echo what they found: a 1 MB value must not make a 1 MB error line, nor a value
    holding a line break two lines."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class CachedDocument(Document):
    """A document of a file whose result came from the cache: where it is, its data read from the
    file again only when something asks (positions are located from the file, not from the data)."""

    def __init__(self, file: Path, index: int, line: int, source: Any):
        self.file, self.index, self.line, self._source = file, index, line, source

    @property
    def data(self) -> Any:  # type: ignore[override]
        return self._source.load()[self.index][0]

    @data.setter
    def data(self, value: Any) -> None:
        self._source.load()[self.index] = (value, *self._source.load()[self.index][1:])


class CachedObject(ConfigObject):
    """An object of a file that validated clean and did not change (config/cache.py).

    What the cross-file checks need is at hand (kind, name, labels, annotations, where it is, its
    reference fields as written) and so are its rows; the spec model and the raw spec are built
    from the file again, once, by whichever stage asks for them (a policy over its kind, a prompt
    check, an export)."""

    def __init__(self, kind: str, name: str, labels: dict, annotations: dict, doc: CachedDocument,
                 refs: dict[str, Any], rows: list):
        self.kind, self.name, self.labels, self.annotations, self.doc = kind, name, labels, annotations, doc
        self.origins = {}
        self.failed = frozenset()
        self.timing = None
        self.cached_refs = refs
        self.cached_rows = rows
        self._spec: Any = None
        self._raw: Any = None

    @property
    def spec(self) -> BaseModel:  # type: ignore[override]
        if self._spec is None:
            self._spec = self.doc._source.load()[self.doc.index][2]
        return self._spec

    @spec.setter
    def spec(self, value: BaseModel) -> None:
        self._spec = value

    def unloaded(self) -> bool:
        """Neither its spec nor its file is in memory now: what a one-off reader (a change rule's
        view of each created object) makes it load can be let go again with release()."""
        source = self.doc._source
        return self._spec is None and not getattr(source, "loaded", True)

    def release(self) -> None:
        """Forget the spec and the reparsed file a demand loaded: at 100,000 rows, keeping every
        created Industry's models after its view was built held the whole taxonomy (178 MB)."""
        self._spec = None
        release = getattr(self.doc._source, "release", None)
        if release is not None:
            release()

    @property
    def raw_spec(self) -> dict[str, Any]:  # type: ignore[override]
        if self._raw is None:
            self._raw = self.doc._source.load()[self.doc.index][1]
        return self._raw

    @raw_spec.setter
    def raw_spec(self, value: dict[str, Any]) -> None:
        self._raw = value


