"""compare and render on in-memory desired and live state: hand-built Rows, no database.

The end-to-end tests (test_controller.py) prove the same rules through real applies; these pin
the rules themselves: create, no-op, field-level update, drift, unmanaged and adopt, delete versus
retire, the parent kept for a child that stays, prevent-destroy, ordering, and how each renders.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import hypothesis
import hypothesis.strategies
import pytest

from control_plane.kinds.registry import ROW_KINDS, apply_order
from control_plane.plans import planfile
from control_plane.plans.compare import BLOCKING, compare
from control_plane.plans.model import FieldChange, Plan
from control_plane.render.plan import NO_CHANGES, render_markdown, render_text, summary_line
from control_plane.secrets import SecretBox
from control_plane.state.desired import DesiredState
from control_plane.state.live import LiveState
from control_plane.state.rows import Row, canonical, fingerprint


@dataclass
class Record:
    """A cplane_managed_objects row, as compare reads it."""

    id: int
    row_id: int
    fingerprint: str
    prevent_destroy: bool = False


@pytest.fixture
def box():
    return SecretBox(None)


def package(slug: str, **overrides) -> dict:
    values = {"slug": slug, "name": slug.title(), "description": "", "credits": 100, "bonus_credits": 0,
              "price": Decimal("10.00"), "currency": "USD", "is_featured": False, "sort_order": 1, "is_active": True}
    values.update(overrides)
    return values


def industry(slug: str, **overrides) -> dict:
    return {"slug": slug, "name": slug.title(), "description": "", "sort_order": 0, "is_active": True, **overrides}


def sector(industry_slug: str, slug: str, **overrides) -> dict:
    return {"industry_id": industry_slug, "slug": slug, "name": slug.title(), "description": "", "is_active": True,
            **overrides}


class World:
    """Desired and live state built by hand; `live(..., managed=True)` also writes the record cplane
    keeps for a row it manages, with the fingerprint of the values it last wrote."""

    def __init__(self, box: SecretBox):
        self.box = box
        self.desired: dict[str, dict[str, Row]] = {}
        self.rows: dict[str, dict[str, Row]] = {}
        self.managed: dict[str, dict[str, Record]] = {}
        self.ids: dict[str, dict[str, int]] = {}
        self._next_id = 1

    @staticmethod
    def key(kind: str, values: dict) -> str:
        return "/".join(str(values[c]) for c in ROW_KINDS[kind].key_columns)

    def want(self, kind: str, values: dict, prevent_destroy: bool = False) -> str:
        key = self.key(kind, values)
        self.desired.setdefault(kind, {})[key] = Row(kind, key, dict(values), None, prevent_destroy)
        return key

    def live(self, kind: str, values: dict, *, managed: bool = True, written: dict | None = None,
             prevent_destroy: bool = False) -> int:
        key = self.key(kind, values)
        row_id = self._next_id
        self._next_id += 1
        self.rows.setdefault(kind, {})[key] = Row(kind, key, dict(values), None, False, row_id)
        self.ids.setdefault(kind, {})[key] = row_id
        if managed:
            last_written = canonical(ROW_KINDS[kind], written if written is not None else values, self.box)
            self.managed.setdefault(kind, {})[key] = Record(row_id, row_id, fingerprint(last_written), prevent_destroy)
        return row_id

    def plan(self, adopt: bool = False, references: dict[str, dict[int, dict[str, int]]] | None = None) -> Plan:
        live = LiveState(self.rows, self.managed, self.ids)

        def counts(kind: str) -> dict[int, dict[str, int]]:
            return (references or {}).get(kind, {})

        return compare(DesiredState(self.desired, []), live, self.box, adopt=adopt, reference_counts=counts)


def test_a_row_only_in_config_is_a_create_with_its_fingerprint(box):
    world = World(box)
    world.want("CreditPackage", package("starter"))
    plan = world.plan()
    [change] = plan.changes
    assert (change.kind, change.name, change.action, change.cause) == ("CreditPackage", "starter", "create", "config")
    assert change.desired_fingerprint == fingerprint(canonical(ROW_KINDS["CreditPackage"], package("starter"), box))
    assert change.values["price"] == Decimal("10.00") and change.live_fingerprint is None
    assert plan.summary == {"create": 1, "update": 0, "delete": 0, "retire": 0}

    text = render_text(plan)
    assert "  # CreditPackage/starter will be created" in text.splitlines()
    assert "  + CreditPackage/starter" in text.splitlines()
    assert text.splitlines()[-1] == summary_line(plan) == "Plan: 1 to create, 0 to update, 0 to delete, 0 to retire."
    markdown = render_markdown(plan)
    assert "| CreditPackage | 1 | 0 | 0 | 0 | 0 |" in markdown.splitlines()
    assert "- `+` **starter** will be created" in markdown.splitlines()


def test_identical_managed_rows_plan_nothing(box):
    world = World(box)
    world.want("CreditPackage", package("starter"))
    world.live("CreditPackage", package("starter"))
    plan = world.plan()
    assert plan.changes == [] and plan.unmanaged == [] and not plan.has_changes
    assert render_text(plan) == NO_CHANGES
    assert f"**{NO_CHANGES}**" in render_markdown(plan)


def test_equal_values_in_another_type_are_equal(box):
    """Canonical values: 10 and Decimal('10.00') are the same price."""
    world = World(box)
    world.want("CreditPackage", package("starter", price=Decimal("10.00")))
    world.live("CreditPackage", package("starter", price=Decimal("10")))
    assert world.plan().changes == []


def test_a_config_edit_is_one_field_level_update(box):
    world = World(box)
    world.want("CreditPackage", package("starter", credits=150))
    world.live("CreditPackage", package("starter"))
    [change] = world.plan().changes
    assert (change.action, change.cause) == ("update", "config")
    assert change.fields == [FieldChange("credits", 100, 150)]
    assert change.live_fingerprint == world.managed["CreditPackage"]["starter"].fingerprint
    assert "      credits: 100 → 150" in render_text(world.plan()).splitlines()
    assert "  - `credits`: `100` → `150`" in render_markdown(world.plan()).splitlines()


def test_an_edit_outside_cplane_is_drift(box):
    world = World(box)
    world.want("CreditPackage", package("starter"))
    world.live("CreditPackage", package("starter", credits=999), written=package("starter"))
    [change] = world.plan().changes
    assert (change.action, change.cause) == ("update", "drift")
    assert change.fields == [FieldChange("credits", 999, 100)]
    text = render_text(world.plan())
    assert "  # CreditPackage/starter will be updated in place (drift: edited outside cplane)" in text.splitlines()
    markdown = render_markdown(world.plan())
    assert "| CreditPackage | 0 | 1 | 0 | 0 | 1 |" in markdown.splitlines()
    assert "**(drift)**" in markdown


def test_rows_cplane_does_not_manage_are_reported_never_changed_unless_adopted(box):
    world = World(box)
    world.want("CreditPackage", package("named-in-config", credits=5))
    world.live("CreditPackage", package("named-in-config"), managed=False)
    world.live("CreditPackage", package("hand-made"), managed=False)
    plan = world.plan()
    # A collision is a change (adopt, with its fields), approved or not: apply refuses it without --adopt.
    [change] = plan.changes
    assert (change.name, change.action, change.cause) == ("named-in-config", "adopt", "adopt")
    assert change.fields == [FieldChange("credits", 100, 5)]
    assert plan.has_changes and plan.adopt is False
    assert plan.unmanaged == [
        {"kind": "CreditPackage", "name": "hand-made", "reason": "not in config and not managed by cplane"},
    ]
    assert "  ? CreditPackage/hand-made: not in config and not managed by cplane" in render_text(plan).splitlines()
    assert "  < CreditPackage/named-in-config" in render_text(plan).splitlines()

    adopted = world.plan(adopt=True)
    [change] = adopted.changes
    assert (change.name, change.action, change.cause) == ("named-in-config", "adopt", "adopt")
    assert change.fields == [FieldChange("credits", 100, 5)]
    assert adopted.adopt is True
    assert adopted.summary["update"] == 1
    assert adopted.unmanaged == plan.unmanaged  # the row config does not name stays untouched


def test_removed_row_is_deleted_or_retired_when_user_data_references_it(box):
    world = World(box)
    world.live("CreditPackage", package("free"))
    used = world.live("CreditPackage", package("used"))
    old = world.live("CreditPackage", package("old", is_active=False))
    refs = {"CreditPackage": {used: {"purchases of this package": 3, BLOCKING: 3},
                              old: {"purchases of this package": 1, BLOCKING: 1}}}
    plan = world.plan(references=refs)
    by_name = {c.name: c for c in plan.changes}
    assert set(by_name) == {"free", "used"}  # `old` is already retired and still referenced: nothing to do
    assert by_name["free"].action == "delete" and by_name["free"].reason == "removed from config"
    assert by_name["used"].action == "retire"
    assert by_name["used"].fields == [FieldChange("is_active", True, False)]
    assert by_name["used"].reason == "referenced by 3 purchases of this package"
    assert by_name["used"].live_fingerprint == world.managed["CreditPackage"]["used"].fingerprint
    assert plan.summary == {"create": 0, "update": 0, "delete": 1, "retire": 1}
    text = render_text(plan).splitlines()
    assert "  - CreditPackage/free" in text and "  ! CreditPackage/used" in text
    assert "      reason: referenced by 3 purchases of this package" in text


def test_a_parent_whose_child_stays_is_retired_not_deleted(box):
    """Deleting an industry would cascade to a sector cplane does not manage: the industry is retired."""
    world = World(box)
    world.live("Industry", industry("retail"))
    world.live("IndustrySector", sector("retail", "shops"))
    world.live("IndustrySector", sector("retail", "hand-made"), managed=False)
    world.live("Industry", industry("gone"))
    world.live("IndustrySector", sector("gone", "all"))
    plan = world.plan()
    actions = {(c.kind, c.name): c.action for c in plan.changes}
    assert actions == {
        ("IndustrySector", "retail/shops"): "delete",
        ("Industry", "retail"): "retire",  # kept for retail/hand-made
        ("IndustrySector", "gone/all"): "delete",
        ("Industry", "gone"): "delete",
    }
    assert {"kind": "IndustrySector", "name": "retail/hand-made",
            "reason": "not in config and not managed by cplane"} in plan.unmanaged


def test_changes_are_ordered_parents_first_and_removals_children_first(box):
    world = World(box)
    world.want("IndustrySector", sector("new", "first"))
    world.want("Industry", industry("new"))
    world.live("IndustrySector", sector("old", "s"))
    world.live("Industry", industry("old"))
    plan = world.plan()
    kinds = [(c.kind, c.action) for c in plan.changes]
    assert kinds == [("Industry", "create"), ("IndustrySector", "create"),
                     ("IndustrySector", "delete"), ("Industry", "delete")]
    order = apply_order()
    assert order.index("Industry") < order.index("IndustrySector")


def test_prevent_destroy_turns_a_removal_into_a_plan_error(box):
    world = World(box)
    world.live("CreditPackage", package("keep-me"), prevent_destroy=True)
    plan = world.plan()
    [change] = plan.changes
    assert change.action == "delete" and change.prevent_destroy
    assert plan.errors == ['CreditPackage/keep-me is annotated cplane/prevent-destroy: "true"; the plan would delete it']
    assert f"Error: {plan.errors[0]}" in render_text(plan).splitlines()
    markdown = render_markdown(plan).splitlines()
    assert "> [!CAUTION]" in markdown and f"> {plan.errors[0]}" in markdown


def test_changing_only_the_prevent_destroy_annotation_is_an_update(box):
    world = World(box)
    world.want("CreditPackage", package("starter"), prevent_destroy=True)
    world.live("CreditPackage", package("starter"))
    [change] = world.plan().changes
    assert change.action == "update"
    assert change.fields == [FieldChange("annotation cplane/prevent-destroy", False, True)]


def test_pending_migrations_are_said_in_text_markdown_and_json(box):
    world = World(box)
    world.want("CreditPackage", package("starter"))
    plan = world.plan()
    plan.pending_migrations = 2
    note = "Schema: 2 migrations pending (apply runs them first)"
    assert note in render_text(plan).splitlines()
    assert note in render_markdown(plan).splitlines()
    data = planfile.to_dict(plan)
    assert data["pending_migrations"] == 2 and data["schema"] == note
    assert planfile.from_dict(data).pending_migrations == 2
    plan.pending_migrations = 0
    assert "migrations pending" not in render_text(plan) + render_markdown(plan)
    assert "schema" not in planfile.to_dict(plan)


@hypothesis.given(hypothesis.strategies.floats(allow_nan=True, allow_infinity=True))
def test_canonical_floats_are_the_normalized_decimal(value):
    """The fast path for floats in the canonical form gives exactly what Decimal gives (fingerprints
    recorded by earlier applies must not move)."""
    from decimal import Decimal

    from control_plane.state.rows import _canon

    expected = format(Decimal(repr(value)).normalize(), "f") if value == value else "nan"
    assert _canon(value) == expected
