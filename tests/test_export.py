"""`cplane export`: the database written back as config, round trip exact, secrets by reference only."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, text

from control_plane.cli.main import main
from control_plane.config.validate import load_config
from control_plane.db.models import CreditPackage
from control_plane.export.exporter import read_export, secret_variable, write_export
from control_plane.kinds.registry import CATALOG_ROWS, CONFIG_KINDS
from control_plane.reconcile.controller import apply_config, make_plan

# The values the repo config's secret references resolve to when the test applies it.
APPLY_SECRETS = {
    "STRIPE_SECRET_KEY": "sk_live_SENTINEL_stripe_0001",
    "STRIPE_WEBHOOK_SECRET": "whsec_SENTINEL_stripe_0002",
    "PAYPAL_CLIENT_SECRET": "paypal_SENTINEL_0003",
    "PAYPAL_WEBHOOK_ID": "paypal_webhook_SENTINEL_0004",
    "OPENAI_API_KEY": "sk-proj-SENTINEL_openai_0005",
    "RUNWARE_API_KEY": "runware_SENTINEL_0006",
}
# The same values under the names the export derives for rows cplane never wrote (adopted rows);
# rows cplane applied are exported with the variables the config named (APPLY_SECRETS).
EXPORT_SECRETS = {
    "PAYMENT_METHOD_STRIPE_SECRET_KEY": APPLY_SECRETS["STRIPE_SECRET_KEY"],
    "PAYMENT_METHOD_STRIPE_WEBHOOK_SECRET": APPLY_SECRETS["STRIPE_WEBHOOK_SECRET"],
    "PAYMENT_METHOD_PAYPAL_SECRET_KEY": APPLY_SECRETS["PAYPAL_CLIENT_SECRET"],
    "PAYMENT_METHOD_PAYPAL_WEBHOOK_SECRET": APPLY_SECRETS["PAYPAL_WEBHOOK_ID"],
    "OPENAI_API_KEY": APPLY_SECRETS["OPENAI_API_KEY"],
    "RUNWARE_API_KEY": APPLY_SECRETS["RUNWARE_API_KEY"],
}


def export_to(engine, out: Path):
    export = read_export(engine)
    assert export.problems == []
    write_export(export, out)
    return export


def yaml_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.yaml"))


@pytest.fixture
def applied(config_tree, migrated_engine):
    """The repo config (plus the test objects) applied, with every secret set."""
    apply_config(migrated_engine, config_tree.root, actor="test", environ=APPLY_SECRETS)
    return migrated_engine


@pytest.fixture
def other_engine(migrated_engine, engine_for, pg_url_factory, tmp_path):
    """A second fresh database of the same kind as migrated_engine."""
    from control_plane.db.engine import upgrade

    if migrated_engine.dialect.name == "sqlite":
        url = f"sqlite:///{tmp_path / 'other.db'}"
    else:
        url = pg_url_factory()
    engine = engine_for(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_round_trip_export_validates_and_plans_no_changes(applied, tmp_path):
    # A retirement made by hand and an unmanaged row made by hand are exported as they are.
    with applied.begin() as conn:
        conn.execute(text("UPDATE plans SET is_active = false WHERE slug = 'free'"))
        conn.execute(insert(CreditPackage.__table__), {
            "slug": "hand-made", "name": "Hand made", "description": "", "credits": 10, "bonus_credits": 0,
            "price": 1.25, "currency": "EUR", "is_featured": False, "sort_order": 0, "is_active": True})
    out = tmp_path / "export"
    export = export_to(applied, out)

    config = load_config(out)
    assert config.ok, [i.format() for i in config.issues]
    result = make_plan(applied, out, adopt=False, environ=APPLY_SECRETS)
    # The only change: the unmanaged row, now named in config, is adopted as it is (no field changes).
    changes = [(c.kind, c.name, c.action, c.fields) for c in result.plan.changes]
    assert changes == [("CreditPackage", "hand-made", "adopt", [])], changes
    assert result.plan.warnings == []  # every secret the export names is set
    assert result.plan.unmanaged == []
    assert sorted(export.secret_variables) == sorted(APPLY_SECRETS)

    free = (out / "plans" / "free.yaml").read_text()
    assert "active: false" in free
    hand = next(o for o in export.objects if o.name == "hand-made")
    assert hand.managed is False and (out / "credit_packages" / "hand-made.yaml").exists()


def test_export_layout_modelines_and_shapes(applied, tmp_path):
    out = tmp_path / "export"
    export = export_to(applied, out)
    folders = {p.name for p in out.iterdir()}
    assert folders == {ck.folder for ck in CONFIG_KINDS.values() if ck.row_kind and ck.row_kind not in CATALOG_ROWS}
    assert "cleanup" not in folders  # the CleanupManifest is config-only
    assert not (out / "permissions").exists()
    for path in yaml_files(out):
        content = path.read_text()
        kind = content.split("\nkind: ", 1)[1].split("\n", 1)[0]
        assert content.splitlines()[0] == f"# yaml-language-server: $schema=../../schemas/{kind}.json"
        assert path.parent.name == CONFIG_KINDS[kind].folder
        assert path.stem == content.split("metadata:\n  name: ", 1)[1].split("\n", 1)[0]
    assert len(export.objects) == len(yaml_files(out))

    config = load_config(out)
    industry = config.objects["Industry"]["test-industry"].spec
    assert [s.name for s in industry.sectors] == ["first", "second"]
    assert [k.keyword for k in industry.sectors[0].seed_keywords] == ["alpha one", "alpha two"]
    assert industry.sectors[0].seed_keywords[0].search_volume == 100
    owner = config.objects["Role"]["owner"]
    assert "billing.manage" in owner.spec.permissions
    assert owner.prevent_destroy  # the annotation travels with the managed record
    stripe = (out / "payment_methods" / "stripe.yaml").read_text()
    assert "secretKey:\n    fromEnv: STRIPE_SECRET_KEY" in stripe
    integration = (out / "integrations" / "default.yaml").read_text()
    assert "openai:\n      fromEnv: OPENAI_API_KEY" in integration
    plan = (out / "plans" / "test-plan.yaml").read_text()
    assert "priceMonthly: 19\n" in plan and "displayName: Test Plan" in plan
    assert "apiVersion: cplane/v1\nkind: Plan\n" in plan


def test_secret_values_never_appear_in_exported_files_or_output(applied, tmp_path):
    out = tmp_path / "export"
    result = CliRunner().invoke(main, ["export", "--out", str(out), "--database-url", str(applied.url.render_as_string(
        hide_password=False))], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    everything = result.output + "".join(p.read_text() for p in yaml_files(out))
    for value in APPLY_SECRETS.values():
        assert value not in everything
    assert "SENTINEL" not in everything
    assert "STRIPE_SECRET_KEY" in result.output  # the variables to set are listed


def test_unset_secret_is_not_exported(config_tree, migrated_engine, tmp_path):
    partial = {k: v for k, v in APPLY_SECRETS.items() if k not in ("PAYPAL_WEBHOOK_ID", "RUNWARE_API_KEY")}
    apply_config(migrated_engine, config_tree.root, actor="test", environ=partial)
    out = tmp_path / "export"
    export = export_to(migrated_engine, out)
    paypal = (out / "payment_methods" / "paypal.yaml").read_text()
    assert "secretKey" in paypal and "webhookSecret" not in paypal
    assert "runware:\n      fromEnv" not in (out / "integrations" / "default.yaml").read_text()
    environ = {k: v for k, v in APPLY_SECRETS.items() if k in export.secret_variables}
    assert make_plan(migrated_engine, out, environ=environ).plan.changes == []


def test_bootstrap_existing_database_with_export_and_adopt(applied, other_engine, config_tree, tmp_path):
    """A: the source of the export. B: the same rows made without cplane (unmanaged)."""
    out = tmp_path / "export"
    export_to(applied, out)

    apply_config(other_engine, config_tree.root, actor="test", environ=APPLY_SECRETS)
    with other_engine.begin() as conn:
        conn.execute(text("DELETE FROM cplane_managed_objects"))

    plan = make_plan(other_engine, out, environ=APPLY_SECRETS).plan
    assert plan.unmanaged == [] and {c.action for c in plan.changes} == {"adopt"} and plan.adopt is False
    unmanaged = {(c.kind, c.name) for c in plan.changes}
    assert ("Plan", "test-plan") in unmanaged and ("IndustrySector", "test-industry/first") in unmanaged
    assert ("PaymentMethod", "stripe") in unmanaged

    adopting = make_plan(other_engine, out, adopt=True, environ=APPLY_SECRETS).plan
    assert adopting.errors == []
    assert adopting.changes and {c.action for c in adopting.changes} == {"adopt"}
    assert {(c.kind, c.name) for c in adopting.changes} == unmanaged
    assert all(c.fields == [] for c in adopting.changes)  # the rows already hold the exported values

    from control_plane.reconcile.controller import apply_plan

    apply_plan(other_engine, adopting, environment=None, actor="test", environ=APPLY_SECRETS)
    after = make_plan(other_engine, out, environ=APPLY_SECRETS).plan
    assert after.changes == [] and after.unmanaged == []


def test_rows_cplane_never_wrote_export_generated_names(applied, tmp_path):
    """Unmanaged (adopted-to-be) rows: cplane never saw their references, so it derives them."""
    with applied.begin() as conn:
        conn.execute(text("DELETE FROM cplane_managed_objects"))
    out = tmp_path / "export"
    export = export_to(applied, out)
    assert sorted(export.secret_variables) == sorted(EXPORT_SECRETS)
    assert "fromEnv: PAYMENT_METHOD_STRIPE_SECRET_KEY" in (out / "payment_methods" / "stripe.yaml").read_text()
    plan = make_plan(applied, out, adopt=True, environ=EXPORT_SECRETS).plan
    assert all(c.action == "adopt" and c.fields == [] for c in plan.changes)


def test_cli_refuses_non_empty_directory_and_speaks_json(applied, tmp_path):
    url = applied.url.render_as_string(hide_password=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    refused = CliRunner().invoke(main, ["export", "--out", str(busy), "--database-url", url])
    assert refused.exit_code == 1
    assert "is not empty" in refused.output and "Traceback" not in refused.output

    out = tmp_path / "export"
    result = CliRunner().invoke(main, ["export", "--out", str(out), "--database-url", url, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["valid"] is True and data["errors"] == [] and data["skipped"] == []
    assert data["objects"] == len(yaml_files(out))
    assert "OPENAI_API_KEY" in data["secret_variables"]


def test_row_that_cannot_be_valid_config_is_reported(applied, tmp_path):
    with applied.begin() as conn:
        conn.execute(insert(CreditPackage.__table__), {
            "slug": "Bad Slug", "name": "Fine title", "description": "", "credits": 5, "bonus_credits": 0,
            "price": 1, "currency": "EUR", "is_featured": False, "sort_order": 0, "is_active": True})
    url = applied.url.render_as_string(hide_password=False)
    out = tmp_path / "export"
    refused = CliRunner().invoke(main, ["export", "--out", str(out), "--database-url", url])
    assert refused.exit_code == 1
    assert "CreditPackage/Bad Slug: metadata.name: String should match pattern" in refused.output
    assert "nothing was written" in refused.output
    assert not out.exists() or not any(out.iterdir())

    skipped = CliRunner().invoke(main, ["export", "--out", str(out), "--database-url", url, "--skip-invalid"])
    assert skipped.exit_code == 0, skipped.output
    assert "skipped CreditPackage/Bad Slug" in skipped.output
    assert load_config(out).ok


@pytest.mark.parametrize(("args", "expected"), [
    (("PaymentMethod", "stripe", "secret_key"), "PAYMENT_METHOD_STRIPE_SECRET_KEY"),
    (("PaymentMethod", "bank-transfer", "webhook_secret"), "PAYMENT_METHOD_BANK_TRANSFER_WEBHOOK_SECRET"),
    (("IntegrationDefaults", "default", "api_keys", "openai"), "OPENAI_API_KEY"),
    (("IntegrationDefaults", "default", "api_keys", "azure_openai"), "AZURE_OPENAI_API_KEY"),
])
def test_secret_variable_names(args, expected):
    assert secret_variable(*args) == expected


def test_provider_keys_shared_by_two_objects_get_qualified_names(applied, tmp_path):
    """Two integration defaults with an OpenAI key each: OPENAI_API_KEY would be ambiguous."""
    from control_plane.export.exporter import build_export
    from control_plane.secrets import SecretBox
    from control_plane.state.live import read_live

    with applied.connect() as conn:
        live = read_live(conn, SecretBox(None))
    managed = live.managed
    live.managed = {}  # rows cplane never wrote: the names are derived, for both
    default = live.rows["IntegrationDefaults"]["default"]
    twin = type(default)(default.kind, "second", {**default.values, "name": "second"}, id=None)
    live.rows["IntegrationDefaults"]["second"] = twin
    export = build_export(live)
    names = {o.name: o.secret_variables for o in export.objects if o.kind == "IntegrationDefaults"}
    assert names["default"]["api_keys.openai"] == "INTEGRATION_DEFAULTS_DEFAULT_API_KEYS_OPENAI"
    assert names["second"]["api_keys.openai"] == "INTEGRATION_DEFAULTS_SECOND_API_KEYS_OPENAI"

    # The managed one keeps the reference cplane applied it from; only the derived name is qualified.
    live.managed = managed
    names = {o.name: o.secret_variables for o in build_export(live).objects if o.kind == "IntegrationDefaults"}
    assert names["default"]["api_keys.openai"] == "OPENAI_API_KEY"
    assert names["second"]["api_keys.openai"] == "INTEGRATION_DEFAULTS_SECOND_API_KEYS_OPENAI"


def test_export_reader_gives_what_read_live_gives(applied):
    """export/reader.py (no decryption, no versions) exports exactly what the plans' reader does."""
    from control_plane.export.exporter import build_export
    from control_plane.export.reader import STORED, read_rows
    from control_plane.secrets import SecretBox
    from control_plane.state.live import read_live

    with applied.connect() as conn:
        live, lean = read_live(conn, SecretBox(None)), read_rows(conn)
    assert {k: set(v) for k, v in lean.rows.items()} == {k: set(v) for k, v in live.rows.items()}
    a, b = build_export(live), build_export(lean)
    assert [(o.path, o.document, o.secret_variables, o.managed) for o in a.objects] == \
        [(o.path, o.document, o.secret_variables, o.managed) for o in b.objects]
    assert a.problems == b.problems == []
    # Stored secrets are known to be there and never read.
    stored = [v for rows in lean.rows.values() for r in rows.values() for v in r.values.values() if v is STORED]
    assert stored
    assert not any(value in str(lean.rows) for value in APPLY_SECRETS.values())


def test_documents_built_in_their_shape_equal_the_dump_of_their_model(applied):
    """Specs are built straight in the document's spelling and validated as the loader validates
    them (no model_dump): every one equals what dumping its model (by alias, defaults left out,
    Decimals as YAML numbers) gives, the careful path round 1 took for every kind."""
    from control_plane.export.exporter import _yaml_ready, build_export
    from control_plane.export.reader import read_rows

    with applied.connect() as conn:
        export = build_export(read_rows(conn))
    assert export.problems == []
    kinds = set()
    for obj in export.objects:
        dumped = _yaml_ready(obj.spec.model_dump(mode="python", by_alias=True, exclude_defaults=True))
        assert obj.document["spec"] == dumped, obj.path
        assert list(obj.document["spec"]) == list(dumped), obj.path  # the same key order too
        # The document is what the loader validates: it gives the very model kept for the checks.
        assert CONFIG_KINDS[obj.kind].spec.model_validate(obj.document["spec"]) == obj.spec
        kinds.add(obj.kind)
    assert {"Industry", "Strategy", "ContentTemplate", "PaymentMethod", "IntegrationDefaults"} <= kinds


def test_only_kinds_whose_columns_hold_models_take_the_dump_path():
    from control_plane.export.exporter import _dumped, _exportable_kinds

    dumped = {ck.kind for ck in _exportable_kinds() if _dumped(ck.spec, ck.children, set(ck.secrets))}
    assert {"Strategy", "ContentTemplate"} <= dumped
    assert "Industry" not in dumped and "PaymentMethod" not in dumped  # children and secrets are built by export


def test_fields_from_columns_leave_out_defaults_of_their_own_type_only():
    from decimal import Decimal

    from control_plane.export.exporter import _NO_DEFAULT, _fields_from_columns

    plan = (("a", "a", True, True), ("b", "b", False, None), ("c", "c", False, Decimal("0.7")),
            ("d", "d", False, _NO_DEFAULT), ("e", "e", True, 0), ("f", "f", False, True))
    assert _fields_from_columns({"a": None, "b": None, "c": Decimal("0.70"), "d": None, "e": 0, "f": 1}, plan) \
        == {"d": None, "f": 1}  # NULL left to a non-null default, equal defaults dropped, 1 is not True
    assert _fields_from_columns({"a": False, "b": 3, "c": Decimal("1.50"), "d": Decimal("2.00"), "e": False}, plan) \
        == {"a": False, "b": 3, "c": 1.5, "d": 2, "e": False}
    assert _fields_from_columns({}, plan) == {}  # fields without a column are left to their defaults


_PLAN_VALUES = st.sampled_from([None, True, False, 0, 1, 3, 0.7, "", "x", "informational", [], [1],
                                 Decimal("0.7"), Decimal("0.70"), Decimal("1.50"), Decimal("2.00"),
                                 Decimal("NaN"), Decimal("1.005")])


@given(st.dictionaries(st.sampled_from("abcdefg"), _PLAN_VALUES))
def test_a_plans_written_out_builder_gives_the_dict_fields_from_columns_gives(values):
    # _fields_builder writes a plan's tests out once: the same keys, values and order for any row.
    from control_plane.export.exporter import _NO_DEFAULT, _fields_builder, _fields_from_columns

    plan = (("a", "a", True, True), ("b", "b", False, None), ("c", "c", False, Decimal("0.7")),
            ("d", "d", False, _NO_DEFAULT), ("e", "e", True, 0), ("f", "f", False, True), ("gg", "g", True, []))
    expected = _fields_from_columns(values, plan)
    got = _fields_builder(plan)(values)
    assert list(got.items()) == list(expected.items())
    assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]


@given(st.decimals(allow_nan=True, allow_infinity=True) | st.decimals(places=2, min_value=0, max_value=10**10))
def test_number_reads_back_as_the_same_decimal(value):
    """A Decimal written as `_number` gives it comes back through the loader's `_to_decimal` equal
    in value; what a float cannot hold (or NaN, infinities) stays a string, which the spec refuses."""
    from control_plane.export.exporter import _number
    from control_plane.kinds.specs import _to_decimal

    written = _number(value)
    if isinstance(written, str):
        assert not value.is_finite() or _to_decimal(float(value)) != value
    else:
        assert type(written) is (int if value == value.to_integral_value() else float)
        assert _to_decimal(written) == value


def test_untyped_reads_give_what_the_models_types_give(migrated_engine):
    """Where export's reader names columns without their types (`untyped_reads`), SQLAlchemy would
    add no result processing with the models' types either: the driver's values are the same."""
    from sqlalchemy import select

    from control_plane.db.dialect import for_dialect
    from control_plane.db.models import ManagedObject
    from control_plane.export.reader import MANAGED_OBJECTS
    from control_plane.kinds.registry import ROW_KINDS

    assert ManagedObject.__tablename__ == MANAGED_OBJECTS
    if not for_dialect(migrated_engine).untyped_reads:
        pytest.skip("this backend's reads keep the models' types")
    dialect = migrated_engine.dialect
    tables = [rk.table for rk in ROW_KINDS.values()] + [ManagedObject.__table__]
    with migrated_engine.connect() as conn:
        for table in tables:
            stmt = select(*table.c)
            description = conn.execute(stmt).cursor.description
            for col, desc in zip(stmt.selected_columns, description, strict=True):
                processor = col.type.dialect_impl(dialect).result_processor(dialect, desc[1])
                assert processor is None, f"{table.name}.{col.name} ({col.type}) needs result processing"


def test_export_on_untyped_reads_imports_no_models(applied):
    """Where reads are untyped, an export process never imports the database models (nor the ORM)."""
    import subprocess
    import sys

    from control_plane.db.dialect import for_dialect

    if not for_dialect(applied).untyped_reads:
        pytest.skip("this backend's reads keep the models' types")
    url = applied.url.render_as_string(hide_password=False)
    code = ("import sys\nfrom control_plane.db.engine import make_engine\n"
            "from control_plane.export.exporter import read_export\n"
            f"export = read_export(make_engine({url!r}))\n"
            "assert export.objects and not export.problems\n"
            "print(sorted(m for m in sys.modules if m.startswith('control_plane.db.models') or m == 'sqlalchemy.orm'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in yaml_files(root)}


def test_rendering_in_two_processes_writes_the_same_bytes(applied, tmp_path):
    # write_export shares the rendering with a forked child where a second CPU is there: each file
    # is written by one process from the same document, so the tree is the one a single process
    # writes, and the paths come back in the objects' order either way.
    export = read_export(applied)
    assert len(export.objects) >= 8  # enough for the shared path (_FORK_MIN_OBJECTS)
    ran = []
    one = write_export(export, tmp_path / "one", workers=1, meanwhile=lambda: ran.append(1))
    two = write_export(export, tmp_path / "two", workers=2, meanwhile=lambda: ran.append(2))
    assert ran == [1, 2]
    assert [p.relative_to(tmp_path / "one") for p in one] == [p.relative_to(tmp_path / "two") for p in two] \
        == [Path(o.path) for o in export.objects]
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_document_no_writer_reproduces_fails_in_one_line_whichever_process_renders_it(
        applied, tmp_path, monkeypatch, workers):
    import control_plane.export.exporter as exporter
    from control_plane.errors import CplaneError

    export = read_export(applied)
    bad = {id(export.objects[3]), id(export.objects[-1])}  # one early, one last: the first is reported
    render = exporter.render_object

    def failing(obj):
        if id(obj) in bad:  # the same objects in the forked child
            raise ValueError("no YAML writer reproduces this document exactly")
        return render(obj)

    monkeypatch.setattr(exporter, "render_object", failing)  # the forked child inherits it
    with pytest.raises(CplaneError) as err:
        write_export(export, tmp_path / "out", workers=workers)
    first = export.objects[3]
    assert str(err.value) == f"cannot write {first.kind}/{first.name} exactly as YAML: " \
                             "no YAML writer reproduces this document exactly"
    assert not (tmp_path / "out" / first.path).exists()


def test_the_bookkeeping_of_the_documents_kinds_is_all_export_reads(applied):
    # read_export reads the managed records of its documents' kinds only (not one per keyword):
    # the same export as with every record read.
    from control_plane.export.exporter import _exportable_kinds, build_export
    from control_plane.export.reader import read_rows

    kinds = frozenset(ck.row_kind for ck in _exportable_kinds())
    with applied.connect() as conn:
        every, some = read_rows(conn), read_rows(conn, kinds)
    assert set(some.managed) == kinds & set(every.managed) and set(every.managed) - kinds  # children have records
    a, b = build_export(every), build_export(some)
    assert [(o.path, o.document, o.secret_variables, o.managed) for o in a.objects] == \
        [(o.path, o.document, o.secret_variables, o.managed) for o in b.objects]


def test_documents_rendered_while_they_are_validated_are_the_same_bytes(applied, tmp_path):
    # read_export(prerender=True): a forked child renders the documents during validation and
    # writes them when write_export names them; the tree is the one a single process writes.
    import os

    from control_plane.export.exporter import _workers

    if _workers() < 2:
        pytest.skip("one CPU: no second process")
    plain = read_export(applied)
    write_export(plain, tmp_path / "one", workers=1)
    export = read_export(applied, prerender=True)
    assert export.prerendered is not None
    pid = export.prerendered.pid
    written = write_export(export, tmp_path / "two")
    export.close()  # after write_export: nothing left to do
    assert written == [tmp_path / "two" / o.path for o in export.objects]
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped


def test_an_export_closed_unwritten_writes_nothing(applied, tmp_path):
    import os

    from control_plane.export.exporter import _workers

    if _workers() < 2:
        pytest.skip("one CPU: no second process")
    before = set(tmp_path.rglob("*"))
    export = read_export(applied, prerender=True)
    pid = export.prerendered.pid
    export.close()  # the child never had a folder to write to: it exits having written nothing
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert set(tmp_path.rglob("*")) == before


def test_a_prerendered_document_no_writer_reproduces_fails_in_one_line(applied, tmp_path, monkeypatch):
    import control_plane.export.exporter as exporter
    from control_plane.errors import CplaneError

    if exporter._workers() < 2:
        pytest.skip("one CPU: no second process")
    render = exporter.render_object
    names = []

    def failing(obj):
        if obj.kind == "Plan" and obj.name == names[0]:
            raise ValueError("no YAML writer reproduces this document exactly")
        return render(obj)

    names.append(sorted(o.name for o in read_export(applied).objects if o.kind == "Plan")[0])
    monkeypatch.setattr(exporter, "render_object", failing)  # before the fork: the child has it
    export = read_export(applied, prerender=True)
    try:
        with pytest.raises(CplaneError) as err:
            write_export(export, tmp_path / "out")
    finally:
        export.close()
    assert str(err.value) == f"cannot write Plan/{names[0]} exactly as YAML: " \
                             "no YAML writer reproduces this document exactly"
    assert not (tmp_path / "out" / f"plans/{names[0]}.yaml").exists()
    assert (tmp_path / "out" / "industries").is_dir()


@pytest.mark.parametrize("enabled", [True, False])
def test_read_export_leaves_the_collector_as_it_found_it(applied, enabled):
    # The cyclic collector is paused while rows are read and documents built, then restored.
    import gc

    (gc.enable if enabled else gc.disable)()
    try:
        export = read_export(applied)
        assert gc.isenabled() is enabled
        assert export.objects and export.problems == []
    finally:
        gc.enable()
