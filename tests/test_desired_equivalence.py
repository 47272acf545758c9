"""The desired side's fast paths give exactly what the straightforward code gives.

- flattening (state/desired.py): rows, their order and their values' order and types, against a
  reference flatten written the plain way (per item: model fields → columns, natural_key);
- the per-file records (config/validate.py): the duplicate-key walk skipped when a file's rows
  have distinct natural keys, issues (with positions) equal to load_config without the cache path;
- the cache's packed rows (config/cache.py): pack then unpack is the identity, secrets and
  prevent-destroy included;
- NonNegativeMoney (kinds/specs.py): the shortcut that skips pydantic's digit count gives the same
  value, or the same errors, as the plain before-validator.
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from control_plane.config import cache as file_cache
from control_plane.config.loader import clear_locate_cache
from control_plane.config.validate import load_config
from control_plane.kinds.registry import COMMON_COLUMN_NAMES, CONFIG_KINDS, ROW_KINDS
from control_plane.kinds.specs import NonNegativeMoney, Strict, _to_decimal
from control_plane.reconcile.validation import load_checked
from control_plane.state.desired import _plain, object_rows
from control_plane.state.rows import Row, natural_key

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"
INTENTS = ("informational", "commercial", "transactional", "navigational", "bogus")


# --- reference flatten ---------------------------------------------------------------------------


def reference_children(children, spec, ancestors: list[str], out: list[Row]) -> None:
    """Flattening as it was written before the fast path: one dict per item, natural_key per row."""
    for child in children:
        rk = ROW_KINDS[child.row_kind]
        skip = {c.field for c in child.children} | {child.key_field}
        for item in getattr(spec, child.field):
            if child.key_field is None:
                values = {child.key_column: item}
            else:
                values = {}
                for name in type(item).model_fields:
                    if name in skip:
                        continue
                    column = child.columns.get(name) or COMMON_COLUMN_NAMES.get(name, name)
                    values[column] = _plain(getattr(item, name))
                values[child.key_column] = getattr(item, child.key_field)
            for column, depth in child.ancestor_columns.items():
                values[column] = ancestors[-1 - depth]
            key = natural_key(rk, values)
            out.append(Row(rk.name, key, values))
            if child.children:
                reference_children(child.children, item, [*ancestors, key], out)


def rows_shape(rows: list[Row]) -> list:
    return [(r.kind, r.key, list(r.values.items()), [type(v) for v in r.values.values()], r.secret_refs,
             r.prevent_destroy) for r in rows]


keyword_item = st.fixed_dictionaries(
    {"keyword": st.text(alphabet="ab /1", min_size=1, max_size=4)},
    optional={
        "searchVolume": st.integers(0, 10**6),
        "difficulty": st.integers(0, 100),
        "cpc": st.one_of(st.integers(0, 10**4), st.decimals(0, 10**4, places=2, allow_nan=False)),
        "intent": st.sampled_from(INTENTS[:4]),
        "active": st.booleans(),
    },
)
sector_item = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "c-1", "d_2"]), "displayName": st.text(min_size=1, max_size=3)},
    optional={"description": st.text(max_size=3), "active": st.booleans(),
              "seedKeywords": st.lists(keyword_item, max_size=6)},
)


@settings(max_examples=150, deadline=None)
@given(sectors=st.lists(sector_item, max_size=5), name=st.sampled_from(["x", "ind-1"]))
def test_flatten_equals_reference(sectors, name):
    """Duplicate keys and keys holding "/" included: the same rows in the same order."""
    from control_plane.config.model import ConfigObject

    spec_data = {"displayName": "X", "sectors": sectors}
    spec = CONFIG_KINDS["Industry"].spec.model_validate(spec_data)
    obj = ConfigObject("Industry", name, spec, {}, {}, None, spec_data)  # type: ignore[arg-type]
    rows = object_rows(obj)
    expected = [rows[0]]
    reference_children(CONFIG_KINDS["Industry"].children, spec, [rows[0].key], expected)
    assert rows_shape(rows) == rows_shape(expected)


@settings(max_examples=50, deadline=None)
@given(permissions=st.lists(st.sampled_from(["content.read", "content.write", "billing.read"]), max_size=3,
                            unique=True))
def test_flatten_scalar_children_equals_reference(permissions):
    from control_plane.config.model import ConfigObject

    spec_data = {"displayName": "R", "permissions": permissions}
    spec = CONFIG_KINDS["Role"].spec.model_validate(spec_data)
    obj = ConfigObject("Role", "r", spec, {}, {}, None, spec_data)  # type: ignore[arg-type]
    rows = object_rows(obj)
    expected = [rows[0]]
    reference_children(CONFIG_KINDS["Role"].children, spec, [rows[0].key], expected)
    assert rows_shape(rows) == rows_shape(expected)


# --- pack / unpack -------------------------------------------------------------------------------

row_values = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.one_of(
    st.none(), st.integers(), st.text(max_size=3), st.decimals(allow_nan=False, places=2), st.booleans(),
    st.lists(st.integers(), max_size=2)), max_size=3)
rows_strategy = st.lists(st.builds(
    Row, st.sampled_from(["K1", "K2"]), st.text(max_size=3), row_values,
    st.one_of(st.none(), st.just({}), st.dictionaries(st.sampled_from(["s"]), st.sampled_from(["VAR"]))),
    st.booleans()), max_size=12)


@settings(max_examples=200, deadline=None)
@given(rows=rows_strategy)
def test_pack_unpack_is_identity(rows):
    import pickle

    packed = pickle.loads(pickle.dumps(file_cache.pack_rows(rows)))
    back = file_cache.unpack_rows(packed, Row)
    assert rows_shape(back) == rows_shape(rows)
    assert all(a.values is not b.values for a, b in zip(back, back[1:], strict=False))


# --- issues: the cache path (walk skipped when keys are distinct) vs plain load_config --------------


def industry(name: str, sectors: list[tuple[str, list[tuple[str, str]]]]) -> str:
    lines = ["apiVersion: cplane/v1", "kind: Industry", "metadata:", f"  name: {name}", "spec:",
             "  displayName: Gen", "  sectors:" if sectors else "  sectors: []"]
    for sector, keywords in sectors:
        lines += [f"    - name: {sector}", "      displayName: S",
                  "      seedKeywords:" if keywords else "      seedKeywords: []"]
        for keyword, intent in keywords:
            lines += [f"        - keyword: {keyword}", f"          intent: {intent}"]
    return "\n".join(lines) + "\n"


sector_lists = st.lists(st.tuples(
    st.sampled_from(["main", "other", "third"]),
    st.lists(st.tuples(st.sampled_from(["kw a", "kw b", "kw/c", "kw d"]),
                       st.sampled_from(INTENTS)), max_size=4)), max_size=3)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(REPO_CONFIG, tmp_path / "config")
    return tmp_path / "config"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(sector_lists, min_size=1, max_size=3))
def test_records_path_reports_what_load_config_reports(tree: Path, monkeypatch, files):
    """Duplicate sectors and keywords (and invalid intents) in random files: the issues, with their
    positions, of the records path (flatten first, walk only on a natural-key collision) equal those
    of load_config without the cache hook, where every object is walked."""
    for old in (tree / "industries").glob("gen-*.yaml"):
        old.unlink()
    for i, sectors in enumerate(files):
        (tree / "industries" / f"gen-{i}.yaml").write_text(industry(f"gen-{i}", sectors))
    monkeypatch.setenv(file_cache.ENV_DISABLE, "1")
    clear_locate_cache()
    plain = load_config(tree)
    clear_locate_cache()
    checked, _ = load_checked(tree)
    assert checked.issues == plain.issues
    assert checked.warnings == plain.warnings


# --- NonNegativeMoney ------------------------------------------------------------------------------

OldMoney = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2), BeforeValidator(_to_decimal)]


class New(Strict):
    v: NonNegativeMoney | None = None


class Old(Strict):
    v: OldMoney | None = None


def outcome(model: type[BaseModel], value):
    try:
        result = model.model_validate({"v": value}).v
        return "ok", repr(result)
    except ValidationError as exc:
        return "error", [(e["type"], e["loc"], e["msg"], repr(e.get("input")), e.get("ctx")) for e in exc.errors()]


money_inputs = st.one_of(
    st.integers(-10**13, 10**13), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1, 1e11).map(lambda f: float(f"{f:.2f}")), st.floats(0, 1e11).map(lambda f: float(f"{f:.3f}")),
    st.decimals(allow_nan=True), st.booleans(), st.none(), st.text(max_size=5),
    st.sampled_from([0, -0.0, 1e-05, 9999999999.99, 10**10, 10**10 - 1, 9999999999.995, 79.99, 0.1]),
)


@settings(max_examples=2000, deadline=None)
@given(value=money_inputs)
def test_money_shortcut_equals_plain_validator(value):
    assert outcome(New, value) == outcome(Old, value)


class _Nested(Strict):
    level: int = 0


class _Item(Strict):
    keyword: str
    tags: list[str] = []
    meta: dict[str, int] = {}
    nested: _Nested | None = None
    amount: Decimal | None = None
    note: str | None = None


class _Parent(Strict):
    seed_keywords: list[_Item] = []


@settings(max_examples=100, deadline=None)
@given(items=st.lists(st.fixed_dictionaries(
    {"keyword": st.text(min_size=1, max_size=3)},
    optional={"tags": st.lists(st.text(max_size=2), max_size=2),
              "meta": st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
              "nested": st.one_of(st.none(), st.fixed_dictionaries({"level": st.integers(0, 3)})),
              "note": st.one_of(st.none(), st.text(max_size=2))}), max_size=5))
def test_flatten_of_non_scalar_fields_equals_reference(items):
    """Fields holding lists, maps and models go through _plain, as they always did."""
    from control_plane.kinds.registry import Child
    from control_plane.state.desired import _flatten_children

    child = Child("seed_keywords", "SeedKeyword", key_field="keyword")
    spec = _Parent.model_validate({"seedKeywords": items})
    ancestors = ["ind", "ind/sec"]
    rows: list[Row] = []
    _flatten_children(None, (child,), spec, ancestors, rows)
    expected: list[Row] = []
    reference_children((child,), spec, ancestors, expected)
    assert rows_shape(rows) == rows_shape(expected)
