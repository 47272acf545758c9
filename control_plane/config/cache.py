"""Per-file cache of validation results: a file whose content did not change is not parsed again.

What is cached: for a base config file (not an overlay) that validated clean on its own (it parsed,
every document passed its envelope and spec, its objects' own checks found nothing, none of them
has a window or a schedule), the objects it declares as compact records (kind, name, labels,
annotations, document index and line, the reference fields as written) and the rows they flatten
to (secrets unresolved). A file with any problem is never cached: its issues are computed every
time, so messages and positions cannot drift from the full path.

Key: the SHA-256 of the file's bytes, salted with everything else the result depends on: cplane's
version, the source of the modules that validate and flatten (the kinds' schemas among them), the
Python and pydantic versions. An object the selected overlay patches is never taken from the cache
(load_config checks this before using an entry). Positions of cross-file problems are located from
the file again when one is reported.

Where: ``.cplane/cache/`` beside the config directory (git-ignored with the rest of ``.cplane/``),
one pickle per entry, written to a temporary file and renamed (atomic; concurrent processes write
the same content under the same name). An entry that cannot be read, does not unpickle, has another
format, salt or digest, or a directory that cannot be written: ignored, and the full path is taken.
Beside an entry, a ``.limits`` marker says its rows passed the column limits (written by
reconcile/validation.py once a whole config with the file passed them; an incremental plan checks
only unmarked files' rows). ``CPLANE_NO_CACHE=1`` turns the disk cache off (the in-process memo that lets ``cplane validate``
check every environment in one pass stays).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from functools import cache
from itertools import groupby, repeat
from operator import attrgetter, is_not
from pathlib import Path
from typing import Any

CACHE_DIR = Path(".cplane") / "cache"
ENV_DISABLE = "CPLANE_NO_CACHE"
FORMAT = 2
# Entries not used for this long are deleted when a process writes new ones (each edit of a file
# makes a new entry; a hit refreshes the entry's mtime). Stray temporary files: after an hour.
MAX_AGE_SECONDS = 7 * 24 * 3600
MAX_TMP_AGE_SECONDS = 3600

# The modules whose code decides what a file validates and flattens to: a change to any of them
# (a new field, another column name, a new check) must not reuse an entry made before it.
_SALT_PACKAGES = ("config", "kinds", "policies")
_SALT_MODULES = ("state/desired.py", "state/rows.py", "state/keys.py", "state/limits.py", "secrets.py")

# One object of a cached file: (kind, name, labels, annotations, doc index, doc line,
# {reference field alias: value as written}, its rows packed by pack_rows: runs of
# (row kind, columns, secret_refs, prevent_destroy, [keys], [value tuples in column order])).
ObjectRecord = tuple[str, str, dict, dict, int, int, dict, list]
# Format 2 packs rows by runs: a taxonomy's rows come in long runs of one kind with the same
# columns, so each run names its columns once and each row is its key and a tuple of values.
# Pickling and unpickling that is several times cheaper than one dict per row (format 1). In memory
# the memo holds an entry's rows as Rows once they are unpacked (state/desired.object_rows puts
# them in the runs' place), shared with the objects made from it: one copy per process.


def disabled() -> bool:
    return os.environ.get(ENV_DISABLE, "").strip().lower() not in ("", "0", "false", "no")


@cache
def salt() -> bytes:
    import pydantic

    from control_plane import __version__

    base = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(f"cplane {__version__} format {FORMAT} python {sys.version} pydantic {pydantic.VERSION}".encode())
    files = [p for pkg in _SALT_PACKAGES for p in sorted((base / pkg).rglob("*.py"))]
    files += [base / m for m in _SALT_MODULES]
    for path in files:
        try:
            h.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        except OSError:  # a module that cannot be read: no stable salt, so nothing matches
            h.update(os.urandom(16))
    return h.digest()


def digest(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


class FileCache:
    """Entries by content digest: in memory for this process, and on disk unless disabled."""

    def __init__(self, root: Path, use_disk: bool | None = None):
        self.memo: dict[bytes, list[ObjectRecord]] = {}
        use_disk = not disabled() if use_disk is None else use_disk
        self.dir: Path | None = (Path(root).resolve().parent / CACHE_DIR) if use_disk else None
        self.hits = self.misses = self.writes = 0

    def _path(self, content: bytes) -> Path:
        return self.dir / f"{hashlib.sha256(salt() + content).hexdigest()}.pickle"  # type: ignore[operator]

    def get(self, content: bytes) -> list[ObjectRecord] | None:
        found = self.memo.get(content)
        if found is None and self.dir is not None:
            found = self._read(content)
            if found is not None:
                self.memo[content] = found
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def limits_checked(self, content: bytes) -> bool:
        """Whether the rows of the entry of `content` passed the column limits (state/limits.py,
        in the salt like everything that decides the rows): a marker beside the entry, written by
        mark_limits_checked once a whole config with this file passed them."""
        if self.dir is None:
            return False
        try:
            return self._path(content).with_suffix(".limits").exists()
        except OSError:
            return False

    def mark_limits_checked(self, content: bytes) -> None:
        if self.dir is None:
            return
        try:
            marker = self._path(content).with_suffix(".limits")
            if not marker.exists():
                marker.touch()
        except OSError:  # (only a cache: the limits are checked again next time)
            pass

    def _read(self, content: bytes) -> list[ObjectRecord] | None:
        try:
            path = self._path(content)
            with open(path, "rb") as f:
                entry = pickle.load(f)
            fmt, entry_salt, entry_digest, records = entry
            if fmt != FORMAT or entry_salt != salt() or entry_digest != content or not isinstance(records, list):
                return None
            for record in records:  # the shape, so a damaged entry is refused here, not used half
                kind, name, labels, annotations, index, line, refs, rows = record
                if not (isinstance(kind, str) and isinstance(name, str) and isinstance(labels, dict)
                        and isinstance(annotations, dict) and isinstance(index, int) and isinstance(line, int)
                        and isinstance(refs, dict) and isinstance(rows, list)):
                    return None
                for run in rows:
                    if not (isinstance(run, tuple) and len(run) == 6 and isinstance(run[1], tuple)
                            and isinstance(run[4], list) and isinstance(run[5], list) and len(run[4]) == len(run[5])):
                        return None
                    if not (set(map(type, run[5])) <= {tuple} and set(map(len, run[5])) <= {len(run[1])}):
                        return None
            try:
                os.utime(path)  # in use: not pruned
            except OSError:
                pass
            return records
        except Exception:  # noqa: BLE001 (missing, unreadable, truncated, another format: a miss)
            return None

    def put(self, content: bytes, records: list[ObjectRecord]) -> None:
        """Records whose rows are Rows (state.rows.Row): kept as they are in the memo (the objects
        built from them share those lists), packed by runs on disk."""
        self.memo[content] = records
        if self.dir is None:
            return
        tmp = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".pickle")
            packed = [(*record[:7], pack_rows(record[7])) for record in records]
            with os.fdopen(fd, "wb") as f:
                pickle.dump((FORMAT, salt(), content, packed), f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self._path(content))
            tmp = None
            self.writes += 1
        except Exception:  # noqa: BLE001 (read-only tree, full disk, a race: the cache is only a cache)
            pass
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


    def prune(self) -> None:
        """Delete entries unused for MAX_AGE_SECONDS (and old temporary files); best effort."""
        if self.dir is None or not self.writes:
            return
        import time

        now = time.time()
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        for name in names:
            limit = MAX_TMP_AGE_SECONDS if name.startswith(".tmp-") else MAX_AGE_SECONDS
            if not name.endswith((".pickle", ".limits")):
                continue
            path = self.dir / name
            try:
                if now - path.stat().st_mtime > limit:
                    path.unlink()
            except OSError:  # gone already (another process pruned it), or not ours to delete
                pass


def pack_rows(rows: list) -> list[tuple]:
    """Rows (state.rows.Row) as the runs the cache stores: consecutive rows of one kind with the same
    columns and neither secret references nor prevent-destroy share one run; any other row is a run
    of its own (its secret_refs object kept as it is). unpack_rows gives the same rows back, in
    order, each with its own values dict. (Per row only C-level calls: map, zip, groupby.)"""
    values = list(map(_VALUES, rows))
    columns = list(map(tuple, values))
    signature = list(zip(map(_KIND, rows), columns, map(is_not, map(_REFS, rows), repeat(None)), map(_PREVENT, rows), strict=True))
    values = list(map(tuple, map(dict.values, values)))
    keys = list(map(_KEY, rows))
    runs: list[tuple] = []
    start = 0
    for (kind, row_columns, has_refs, prevent), group in groupby(signature):
        count = len(list(group))
        end = start + count
        if has_refs or prevent:
            runs.extend((kind, row_columns, row.secret_refs, row.prevent_destroy, [row.key], [values[i]])
                        for i, row in zip(range(start, end), rows[start:end], strict=True))
        else:
            runs.append((kind, row_columns, None, False, keys[start:end], values[start:end]))
        start = end
    return runs


_VALUES, _KIND, _KEY = attrgetter("values"), attrgetter("kind"), attrgetter("key")
_REFS, _PREVENT = attrgetter("secret_refs"), attrgetter("prevent_destroy")


def unpack_rows(runs: list[tuple], make: Any, values_for: Any = None) -> list:
    """The rows of pack_rows's runs, each built by `make(kind, key, values, secret_refs, prevent_destroy)`;
    values: `values_for(columns)(value tuple)` when given (state.rows.values_maker), else a dict."""
    out: list = []
    extend = out.extend
    for kind, columns, refs, prevent, keys, values in runs:  # per row only C-level iteration
        made = map(values_for(columns), values) if values_for is not None else map(dict, map(zip, repeat(columns), values))
        extend(map(make, repeat(kind), keys, made, repeat(refs), repeat(prevent)))
    return out
