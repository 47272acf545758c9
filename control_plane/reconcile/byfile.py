"""The desired rows by file: per-kind digests that cost what changed, and the changed rows of a kind
found from the files that changed, without scanning the kind's managed records.

When every object of the config came through the per-file cache (config/cache.py: each file's
objects are `CachedObject`s, their rows a function of the file's content and the cache's salt
alone, since an object an overlay patches, or a timed one, is never cached), the desired rows of a
kind are the union of the rows each file flattens to (plus catalog rows, which come from code the
salt covers). Then:

- **Digest by file.** A kind's digest (`Layout.kind_digest`, for kinds without secret columns) is a
  SHA-256 over the files, in path order, of each file's digest of its rows of that kind
  (`state.rows.rows_digest`: every key, fingerprint, prevent-destroy, secret references), then the
  catalog rows. Equal digests mean the same files gave the same rows in the same order, so compare
  sees the same desired side, which is what the incremental plan needs of a digest. An apply
  records every file's content digest and its per-kind digests (`record`, in the applied-state
  record's `tables` JSON, under "files" and "salt"); the next plan takes a file's per-kind digests
  from there when its content and the salt are the recorded ones, and computes them (fingerprints
  of its rows) only for the files that changed: a one-file edit fingerprints one file.
- **Changed rows by file.** For a kind only edited in config (reconcile/incremental.py decides
  which), the rows of files whose content is unchanged are the rows the last apply applied, so the
  rows compare could find changed are among those of the changed, added and removed files: the
  old content's rows (its cache entry, found by the recorded content digest) against the new
  content's, by fingerprint, prevent-destroy and secret references (`changed_keys`). A key that
  moved between files is in both files' differences, so it is read and compared.

Any doubt answers None, and the caller takes the general path (digests of every row, the scan of
the managed records): an object not from the cache (patched by the overlay, in an overlay file,
timed, from a file with problems), a record without "files" or of another salt, an old content
whose cache entry is gone or unreadable (`CPLANE_NO_CACHE=1` keeps entries in memory only, so the
old contents are not there), a kind with secret columns.
"""

from __future__ import annotations

import hashlib
import json
from itertools import repeat
from pathlib import Path
from typing import Any

from control_plane.config.cache import FileCache, salt, unpack_rows
from control_plane.config.model import CachedObject, ConfigSet
from control_plane.kinds.registry import CATALOG_ROWS, ROW_KINDS, RowKind
from control_plane.secrets import SecretBox
from control_plane.state.rows import Row, natural_key, row_fingerprint, rows_digest, rows_fingerprints

# A row as the cache keeps it: (kind, key, values, secret_refs, prevent_destroy).
RowTuple = tuple


def _tuple(row: Any) -> RowTuple:
    return row if row.__class__ is tuple else (row.kind, row.key, row.values, row.secret_refs, row.prevent_destroy)


def _as_tuple(*row: Any) -> RowTuple:
    return row


def _row_tuples(rows: list) -> list[RowTuple]:
    """A cache record's rows as RowTuples, whichever form they are in: Rows (built in this process,
    or unpacked by state.desired.object_rows) or the packed runs an entry read from disk holds
    until then (config/cache.py, format 2)."""
    if rows and rows[0].__class__ is tuple:
        return unpack_rows(rows, _as_tuple)
    return [_tuple(row) for row in rows]


class Layout:
    """The desired rows of a config whose every object came through the per-file cache, by file."""

    def __init__(self, config: ConfigSet, box: SecretBox, files: dict[str, tuple[bytes, list[CachedObject]]]):
        self.config, self.box = config, box
        # relative path -> (content digest, its objects in the order config_rows takes them)
        self.files = files
        self._by_kind: dict[str, dict[str, list[RowTuple]]] = {}
        self._recorded: dict[str, list] = {}  # relative path -> [content hex, {kind: digest}] (same salt)
        self._digests: dict[tuple[str, str], str] = {}
        # Per kind, fingerprints already computed of the desired rows by key (compare's, for a kind
        # it fingerprinted whole) and those rows: a file's row that is that very Row takes its
        # fingerprint from there instead of hashing it again (a first apply's 100,000).
        self.known: dict[str, tuple[dict[str, Row], dict[str, str]]] = {}

    @classmethod
    def of(cls, config: ConfigSet, box: SecretBox) -> Layout | None:
        """None unless every object came through the cache (so that its rows are its file's)."""
        files: dict[str, tuple[bytes, list[CachedObject]]] = {}
        root = Path(config.root)
        for objects in config.objects.values():
            for obj in objects.values():
                if not isinstance(obj, CachedObject):
                    return None
                path = Path(obj.doc.file)
                rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
                content = obj.doc._source.content
                entry = files.setdefault(rel, (content, []))
                if entry[0] != content:
                    return None
                entry[1].append(obj)
        return cls(config, box, files)

    def rows(self, rel: str) -> dict[str, list[RowTuple]]:
        """One file's rows by kind (built when first asked: unchanged files never are)."""
        found = self._by_kind.get(rel)
        if found is None:
            found = {}
            for obj in self.files[rel][1]:
                for row in _row_tuples(obj.cached_rows):
                    found.setdefault(row[0], []).append(row)
            self._by_kind[rel] = found
        return found

    def _same(self, rel: str) -> dict[str, str] | None:
        """The recorded per-kind digests of a file whose content is the recorded one."""
        recorded = self._recorded.get(rel)
        if recorded is not None and recorded[0] == self.files[rel][0].hex():
            return recorded[1]
        return None

    def kinds(self, rel: str) -> set[str]:
        """The kinds without secret columns that a file has rows of."""
        same = self._same(rel)
        if same is not None:
            return set(same)
        return {kind for kind in self.rows(rel) if kind in ROW_KINDS and not ROW_KINDS[kind].secret_columns}

    # --- digests ---------------------------------------------------------------------------------

    def seed(self, tables: dict[str, Any] | None) -> None:
        """Take the recorded per-file digests of a record made with this code (same salt)."""
        if not isinstance(tables, dict) or tables.get("salt") != salt().hex():
            return
        recorded = tables.get("files")
        if isinstance(recorded, dict):
            self._recorded = {str(k): v for k, v in recorded.items()
                              if isinstance(v, list) and len(v) == 2 and isinstance(v[1], dict)}

    def file_digest(self, rel: str, kind: str) -> str:
        """The digest of one file's rows of `kind` (state.rows.rows_digest)."""
        found = self._digests.get((rel, kind))
        if found is not None:
            return found
        same = self._same(rel)
        if same is not None and isinstance(same.get(kind), str):
            found = same[kind]
        else:
            found = _rows_digest(ROW_KINDS[kind], self.rows(rel).get(kind, ()), self.box, self.known.get(kind))
        self._digests[(rel, kind)] = found
        return found

    def kind_digest(self, kind: str) -> str:
        """The digest of a kind's desired rows, by file (see the module's docstring)."""
        rk = ROW_KINDS[kind]
        h = hashlib.sha256(f"files\0{kind}\0".encode())
        for rel in sorted(self.files):
            if kind in self.kinds(rel):
                h.update(f"{rel}\0{self.file_digest(rel, kind)}\0".encode())
        produce = CATALOG_ROWS.get(kind)
        if produce is not None:
            rows = []
            for _key, values in produce():
                rows.append((kind, natural_key(rk, values), values, None, False))
            h.update(f"catalog\0{_rows_digest(rk, rows, self.box)}".encode())
        return "f:" + h.hexdigest()

    def record(self) -> dict[str, Any]:
        """What an apply records: the salt, and per file its content digest and per-kind digests
        (of the kinds without secret columns: the others are always read)."""
        files = {}
        for rel, (content, _) in sorted(self.files.items()):
            files[rel] = [content.hex(), {kind: self.file_digest(rel, kind) for kind in sorted(self.kinds(rel))}]
        return {"salt": salt().hex(), "files": files}

    # --- changed rows ----------------------------------------------------------------------------

    def changed_keys(self, kind: str, tables: dict[str, Any] | None) -> frozenset[str] | None:
        """The natural keys of `kind` whose desired row may differ from the one the recorded apply
        applied: those of changed, added and removed files that differ between the old and the new
        content. None: not known exactly (no usable record, an old content not in the cache)."""
        if not isinstance(tables, dict) or tables.get("salt") != salt().hex():
            return None
        recorded = tables.get("files")
        cache = getattr(self.config, "_loaded", None)
        if not isinstance(recorded, dict) or not isinstance(cache, FileCache):
            return None
        rk = ROW_KINDS[kind]
        changed: set[str] = set()
        for rel in set(recorded) | set(self.files):
            old = recorded.get(rel)
            new = self.files.get(rel)
            if old is not None and not (isinstance(old, list) and len(old) == 2 and isinstance(old[0], str)):
                return None
            if old is not None and new is not None and old[0] == new[0].hex():
                continue  # the same content: the same rows as applied
            old_rows: list[RowTuple] = []
            if old is not None:
                try:
                    records = cache.get(bytes.fromhex(old[0]))
                except ValueError:
                    return None
                if records is None:
                    return None
                old_rows = [record[7] for record in records]
            before: dict[str, tuple] = {}
            for rows in old_rows:
                before.update(_signatures(rows, kind))
            after = _signatures(self.rows(rel).get(kind, []), kind) if new is not None else {}
            for key in before.keys() | after.keys():
                a, b = before.get(key), after.get(key)
                if a is None or b is None or (repr(a) != repr(b)
                                              and self._state(rk, _from_signature(key, kind, a))
                                              != self._state(rk, _from_signature(key, kind, b))):
                    changed.add(key)
        return frozenset(changed)

    def _state(self, rk: RowKind, row: RowTuple) -> tuple:
        """What compare sees of a desired row: its fingerprint, prevent-destroy, secret references.
        (Rows whose values, references and flag print the same are the same row: plain values of
        the same types, which is all flattening makes; only the others are fingerprinted.)"""
        _, _, values, refs, prevent = row
        return (row_fingerprint(rk, values, self.box), bool(prevent),
                json.dumps(refs, sort_keys=True) if refs else "")


def _signatures(rows: list, kind: str) -> dict[str, tuple]:
    """Per natural key of `kind`, its row as (columns, values in column order, secret_refs,
    prevent_destroy), whichever form `rows` are in (Rows, RowTuples or a cache entry's packed
    runs, which are read without building a values dict per row). Two rows whose signatures print
    the same are rows whose values dicts, references and flag print the same (the test
    changed_keys makes before fingerprinting); a later row of a key replaces an earlier one."""
    out: dict[str, tuple] = {}
    if rows and rows[0].__class__ is tuple and len(rows[0]) == 6 and rows[0][1].__class__ is tuple:
        for run_kind, columns, refs, prevent, keys, values in rows:  # packed runs (config/cache.py)
            if run_kind == kind:
                out.update(zip(keys, zip(repeat(columns), values, repeat(refs), repeat(prevent)), strict=True))
        return out
    for row in rows:
        row_kind, key, values, refs, prevent = _tuple(row)
        if row_kind == kind:
            out[key] = (tuple(values), tuple(values.values()), refs, prevent)
    return out


def _from_signature(key: str, kind: str, signature: tuple) -> RowTuple:
    columns, values, refs, prevent = signature
    return (kind, key, dict(zip(columns, values, strict=True)), refs, prevent)


def _rows_digest(rk: RowKind, rows, box: SecretBox,
                 known: tuple[dict[str, Row], dict[str, str]] | None = None) -> str:
    by_key = {}
    for row in rows:
        kind, key, values, refs, prevent = _tuple(row)
        by_key[key] = Row(kind, key, values, refs, prevent)
    if known is None:
        return rows_digest(rk, by_key, rows_fingerprints(rk, by_key, box))
    # A row whose values are the very dict of the desired row that was fingerprinted (the same
    # Row's) has that fingerprint; any other is hashed here.
    desired, fingerprints = known
    found = {}
    for key, row in by_key.items():
        same = desired.get(key)
        fp = fingerprints.get(key) if same is not None and same.values is row.values else None
        found[key] = fp if fp is not None else row_fingerprint(rk, row.values, box)
    return rows_digest(rk, by_key, found)
