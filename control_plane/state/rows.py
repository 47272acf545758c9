"""The one comparable shape of desired and live state, and the one place equality is decided.

Both sides become `Row`s: a row kind, a natural key, and column values in which every reference to
another system row is that row's natural key (never a database id). Secrets are plaintext in
memory only. `canonical()` gives the form in which the two sides are compared and fingerprinted;
nothing else in cplane compares rows or computes a fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from control_plane.kinds.registry import RowKind
from control_plane.secrets import SecretBox

EXCLUDED_COLUMNS = frozenset({"id", "created_at", "updated_at", "account_id"})


@cache
def managed_columns(rk: RowKind) -> tuple[str, ...]:
    """Columns cplane owns in a row kind's table: everything but ids, timestamps, tenancy and versions."""
    return tuple(
        c for c in rk.column_lengths if c not in EXCLUDED_COLUMNS and c != rk.version_column
    )


@dataclass(slots=True)
class Row:
    kind: str
    key: str
    values: dict[str, Any]
    # Column -> env var name (or {sub: env var}); desired rows only.
    secret_refs: dict[str, Any] | None = None
    prevent_destroy: bool = False
    # Live rows only.
    id: int | None = None
    version: int | None = None
    # Live rows only: the stored ciphertext of each secret column (values hold them decrypted).
    stored: dict[str, Any] | None = None


@cache
def values_maker(columns: tuple[str, ...]) -> Callable[[Iterable[Any]], dict[str, Any]]:
    """The function making a row's values dict from its values in `columns` order, as
    `dict(zip(columns, values))` does, in less memory: the dicts of one column tuple share their
    keys (CPython's split-table dicts, those of instances of one class: the key table is stored
    once and each dict holds only its values, ~160 instead of ~280 bytes for 8 columns). They are
    plain dicts in every other respect (equality, order, copies, JSON, pickling), and one that is
    given another key becomes an ordinary dict. At 100,000 rows per side of a plan: ~12 MB each."""
    holder = type("RowValues", (), {"__slots__": ("__dict__",)})
    first = holder()
    for column in columns:  # the shared key table, in column order
        setattr(first, column, None)
    del first

    def make(values: Iterable[Any], holder=holder, columns=columns, zip=zip) -> dict[str, Any]:
        d = holder().__dict__
        d.update(zip(columns, values))
        return d

    make.holder = holder  # type: ignore[attr-defined]  (for a hot loop that inlines make)
    return make


def natural_key(rk: RowKind, values: dict[str, Any]) -> str:
    columns = rk.key_columns
    if len(columns) == 1:
        return str(values[columns[0]])
    return "/".join([str(values[c]) for c in columns])


# --- canonical form -------------------------------------------------------------------------------


# Scalars that are their own canonical form (also what flattening config takes as it is).
PLAIN = (str, int, bool, type(None))
_PASSTHROUGH = frozenset(PLAIN)


def _canon(value: Any) -> Any:
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float):
        text = repr(value)
        if "e" not in text and "n" not in text:
            # Plain notation (no exponent, not inf or nan): what Decimal's normalize + "f" gives,
            # without building a Decimal (a float column read or parsed per row).
            return text.rstrip("0").rstrip(".") if "." in text else text
        return format(Decimal(text).normalize(), "f") if value == value else "nan"
    if isinstance(value, dict):
        return json.dumps({str(k): _canon(v) for k, v in value.items()}, sort_keys=True, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return json.dumps([_canon(v) for v in value], sort_keys=True, ensure_ascii=False)
    return str(value)


def canonical(rk: RowKind, values: dict[str, Any], box: SecretBox) -> tuple:
    """One tuple per row state: equal tuples mean equal rows. Secrets enter only as an HMAC."""
    secret = rk.secret_columns
    if not secret:
        get = values.get
        return tuple([
            value if value.__class__ in _PASSTHROUGH else _canon(value)
            for value in [get(c) for c in managed_columns(rk)]
        ])
    return tuple(
        [_canon(_digest_secret(values.get(c), box) if c in secret else values.get(c)) for c in managed_columns(rk)]
    )


def canonical_column(rk: RowKind, column: str, value: Any, box: SecretBox) -> Any:
    return _canon(_digest_secret(value, box) if column in rk.secret_columns else value)


def _digest_secret(value: Any, box: SecretBox) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: box.digest(v) if v is not None else None for k, v in sorted(value.items())}
    return box.digest(value)


def fingerprint(canonical_form: tuple) -> str:
    return hashlib.sha256(repr(canonical_form).encode()).hexdigest()


def row_fingerprint(rk: RowKind, values: dict[str, Any], box: SecretBox) -> str:
    return fingerprint(canonical(rk, values, box))


def columns_differ(rk: RowKind, a: dict[str, Any], b: dict[str, Any], columns: tuple[str, ...], box: SecretBox) -> bool:
    """Whether two states of a row differ in any of `columns`, by the same rules as a whole-row compare."""
    return any(canonical_column(rk, c, a.get(c), box) != canonical_column(rk, c, b.get(c), box) for c in columns)


def rows_fingerprints(rk: RowKind, rows: dict[str, Row], box: SecretBox) -> dict[str, str]:
    """Each desired row's fingerprint, as compare computes it and apply records it."""
    return {key: fingerprint(canonical(rk, row.values, box)) for key, row in rows.items()}


def rows_digest(rk: RowKind, rows: dict[str, Row], fingerprints: dict[str, str]) -> str:
    """One digest of a row kind's desired rows as compare sees them: every key with its fingerprint
    (`rows_fingerprints`: canonical values, secrets as HMACs, never values), its prevent-destroy
    annotation and its secret references. Equal digests mean compare would find the same desired
    side (the incremental plan's test)."""
    digest = hashlib.sha256(rk.name.encode())
    parts = []  # (hashed a few thousand rows at a time: the same bytes as one update per row)
    for key in sorted(rows):
        row = rows[key]
        refs = json.dumps(row.secret_refs, sort_keys=True) if row.secret_refs else ""
        parts.append(f"{key}\0{fingerprints[key]}\0{bool(row.prevent_destroy)}\0{refs}\0")
        if len(parts) >= 4096:
            digest.update("".join(parts).encode())
            parts.clear()
    digest.update("".join(parts).encode())
    return digest.hexdigest()
