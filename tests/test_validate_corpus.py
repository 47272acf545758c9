"""The seeded-mistake corpus of issue 13: each case edits a copy of config/ and asserts every line
`cplane validate` reports, exactly (file:line:col: KIND/NAME: message).

Cases marked `schema` are mistakes of a single document's shape: the committed JSON Schema must
reject that document too, and accept it once the mistake is fixed (the two never disagree).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest
import yaml_rs

from control_plane.reconcile.validation import validate_all

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"


def plan(name: str, extra: str = "", kind: str = "Plan") -> str:
    """A valid plan document (8 lines) followed by `extra` (which starts on line 9)."""
    return (f"apiVersion: cplane/v1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n  displayName: X\n"
            f"  priceMonthly: 5\n  priceYearly: 50\n{extra}")


def overlay(patches: str) -> str:
    """An overlay file named qa; its patches start on line 7."""
    return f"apiVersion: cplane/v1\nkind: Overlay\nmetadata:\n  name: qa\nspec:\n  patches:\n{patches}"


def setting(name: str, lines: str) -> str:
    """A SystemSetting document; `lines` (the spec's) start on line 6."""
    return f"apiVersion: cplane/v1\nkind: SystemSetting\nmetadata:\n  name: {name}\nspec:\n{lines}"


@dataclass
class Case:
    files: dict[str, str | None]  # path under config/ -> content (None: delete the file)
    expected: list[str]
    # For a one-document shape mistake: (file, the same document fixed); the committed schema
    # rejects the file's document and accepts the fixed one.
    schema: tuple[str, str] | None = None
    not_shown: list[str] = field(default_factory=list)


CASES: dict[str, Case] = {
    # 1. Positions where the mistake is
    "overlay-typo": Case(
        {"environments/qa.yaml": overlay("    - kind: IntegrationDefaults\n      name: default\n"
                                         "      patch:\n        textModle: gpt-4.1\n")},
        ["config/environments/qa.yaml:10:9: IntegrationDefaults/default: unknown field 'textModle' "
         "(did you mean 'textModel'?)"],
    ),
    "overlay-literal-secret": Case(
        {"environments/qa.yaml": overlay("    - kind: PaymentMethod\n      name: stripe\n"
                                         "      patch:\n        secretKey: sk_live_DO_NOT_ECHO\n")},
        ["config/environments/qa.yaml:10:20: PaymentMethod/stripe: spec.secretKey: secret fields take a reference "
         "{fromEnv: VARIABLE}, never a literal value (value not shown)"],
        not_shown=["sk_live_DO_NOT_ECHO"],
    ),
    "overlay-wrong-type-and-base-wrong-type": Case(
        {"plans/mixed.yaml": plan("mixed", "  maxUsers: many\n"),
         "environments/qa.yaml": overlay("    - kind: Plan\n      name: mixed\n      patch:\n        maxSites: ten\n")},
        ["config/environments/qa.yaml:10:19: Plan/mixed: spec.maxSites: expected an integer, got 'ten'",
         "config/plans/mixed.yaml:9:13: Plan/mixed: spec.maxUsers: expected an integer, got 'many'"],
    ),
    "overlay-nested-merge": Case(
        # The patch merges into settings; the base's own value under it stays the base's.
        {"payment_methods/merged.yaml": "apiVersion: cplane/v1\nkind: PaymentMethod\nmetadata:\n  name: merged\n"
                                        "spec:\n  displayName: M\n  provider: paypal\n  currencies: [USDD]\n",
         "environments/qa.yaml": overlay("    - kind: PaymentMethod\n      name: merged\n      patch:\n"
                                         "        provider: paypl\n")},
        ["config/environments/qa.yaml:10:19: PaymentMethod/merged: spec.provider: expected 'stripe', 'paypal', "
         "'bank_transfer' or 'manual', got 'paypl' (did you mean 'paypal'?)",
         "config/payment_methods/merged.yaml:8:16: PaymentMethod/merged: spec.currencies[0]: "
         "'USDD' is not an ISO 4217 currency code"],
    ),
    "overlay-unknown-kind": Case(
        {"environments/qa.yaml": overlay("    - kind: Plna\n      name: pro\n      patch: {maxSites: 2}\n")},
        ["config/environments/qa.yaml:7:13: Overlay/qa: spec.patches[0].kind: unknown kind 'Plna' (did you mean 'Plan'?)"],
    ),
    "overlay-unknown-object": Case(
        {"environments/qa.yaml": overlay("    - kind: Plan\n      name: enterprize\n      patch: {maxSites: 2}\n")},
        ["config/environments/qa.yaml:8:13: Overlay/qa: patch target Plan/enterprize does not exist "
         "(did you mean 'enterprise'?)"],
    ),
    "overlay-unknown-patch-field": Case(
        {"environments/qa.yaml": overlay("    - kind: Plan\n      name: pro\n      pacth: {maxSites: 2}\n")},
        ["config/environments/qa.yaml:7:7: Overlay/qa: spec.patches[0]: a patch has kind, name, and patch or schedule (or both); "
         "unknown field 'pacth' (did you mean 'patch'?)"],
    ),
    # 2. Messages that name things
    "wrong-type": Case(
        {"plans/wrong.yaml": plan("wrong", "  maxSites: ten\n")},
        ["config/plans/wrong.yaml:9:13: Plan/wrong: spec.maxSites: expected an integer, got 'ten'"],
        schema=("plans/wrong.yaml", plan("wrong", "  maxSites: 10\n")),
    ),
    "nested-wrong-type": Case(
        {"industries/zz.yaml": "apiVersion: cplane/v1\nkind: Industry\nmetadata:\n  name: zz\nspec:\n  displayName: Z\n"
                               "  sectors:\n    - name: a\n      displayName: A\n      seedKeywords:\n"
                               "        - {keyword: k, difficulty: hard}\n"},
        ["config/industries/zz.yaml:11:36: Industry/zz: spec.sectors[0].seedKeywords[0].difficulty: "
         "expected an integer, got 'hard'"],
        schema=("industries/zz.yaml", "apiVersion: cplane/v1\nkind: Industry\nmetadata:\n  name: zz\nspec:\n"
                "  displayName: Z\n  sectors:\n    - name: a\n      displayName: A\n      seedKeywords:\n"
                "        - {keyword: k, difficulty: 3}\n"),
    ),
    "unknown-field": Case(
        {"plans/typo.yaml": plan("typo", "  priceMontly: 5\n")},
        ["config/plans/typo.yaml:9:3: Plan/typo: unknown field 'priceMontly' (did you mean 'priceMonthly'?)"],
        schema=("plans/typo.yaml", plan("typo")),
    ),
    "unknown-nested-field": Case(
        {"strategies/zz.yaml": "apiVersion: cplane/v1\nkind: Strategy\nmetadata:\n  name: zz\nspec:\n  displayName: Z\n"
                               "  sections:\n    - heading: H\n      minWrods: 3\n"},
        ["config/strategies/zz.yaml:9:7: Strategy/zz: spec.sections[0]: unknown field 'minWrods' "
         "(did you mean 'minWords'?)"],
        schema=("strategies/zz.yaml", "apiVersion: cplane/v1\nkind: Strategy\nmetadata:\n  name: zz\nspec:\n"
                "  displayName: Z\n  sections:\n    - heading: H\n      minWords: 3\n"),
    ),
    "unknown-kind": Case(
        {"plans/plna.yaml": plan("plna", kind="Plna")},
        ["config/plans/plna.yaml:2:7: Plna/plna: unknown kind 'Plna' (did you mean 'Plan'?)"],
    ),
    "unknown-module": Case(
        {"plans/mods.yaml": plan("mods", "  modules: [planer, writer, webhookz]\n")},
        ["config/plans/mods.yaml:9:13: Plan/mods: spec.modules[0]: unknown module 'planer' (did you mean 'planner'?)",
         "config/plans/mods.yaml:9:29: Plan/mods: spec.modules[2]: unknown module 'webhookz'; known: planner, writer, "
         "linker, optimizer, automation, integration, publisher"],
    ),
    "unknown-reference": Case(
        {"strategies/zz.yaml": "apiVersion: cplane/v1\nkind: Strategy\nmetadata:\n  name: zz\nspec:\n  displayName: Z\n"
                               "  contentType: blog-psot\n"},
        ["config/strategies/zz.yaml:7:16: Strategy/zz: spec.contentType: ContentType 'blog-psot' does not exist "
         "(did you mean 'blog-post'?)"],
    ),
    "unknown-enum-value": Case(
        {"notification_templates/zz.yaml": "apiVersion: cplane/v1\nkind: NotificationTemplate\nmetadata:\n  name: zz\n"
                                           "spec:\n  displayName: Z\n  event: e\n  channel: emial\n  body: b\n"},
        ["config/notification_templates/zz.yaml:8:12: NotificationTemplate/zz: spec.channel: expected 'email', "
         "'in_app', 'webhook' or 'slack', got 'emial' (did you mean 'email'?)"],
        schema=("notification_templates/zz.yaml", "apiVersion: cplane/v1\nkind: NotificationTemplate\nmetadata:\n"
                "  name: zz\nspec:\n  displayName: Z\n  event: e\n  channel: email\n  body: b\n"),
    ),
    "yaml-error-names-the-document": Case(
        {"plans/broken.yaml": "apiVersion: cplane/v1\nkind: Plan\nmetadata:\n  name: broken\nspec:\n"
                              "  displayName: [unclosed\n"},
        ["config/plans/broken.yaml:7:1: Plan/broken: YAML syntax error: expected ',' or ']', "
         "but got '<stream end>'"],
    ),
    # 3. All errors of an object in one run
    "three-stages-in-one-object": Case(
        {"roles/zz.yaml": "apiVersion: cplane/v1\nkind: Role\nmetadata:\n  name: zz\nspec:\n  displayName: Z\n"
                          "  rank: high\n  permissions: [content.veiw, content.edit, content.edit]\n"},
        # schema (rank), reference (content.veiw) and cross-item (content.edit twice), one run
        ["config/roles/zz.yaml:7:9: Role/zz: spec.rank: expected an integer, got 'high'",
         "config/roles/zz.yaml:8:16: Role/zz: spec.permissions: a permission is listed twice",
         "config/roles/zz.yaml:8:17: Role/zz: spec.permissions[0]: unknown permission 'content.veiw' "
         "(did you mean 'content.view'?)"],
    ),
    "schema-reference-and-cross-field": Case(
        # A prompt whose `active` is wrong, whose text uses an undeclared variable and which a
        # strategy names under a misspelt type: the schema error hides neither of the others.
        {"prompts/zz.yaml": "apiVersion: cplane/v1\nkind: Prompt\nmetadata:\n  name: zz\nspec:\n  displayName: Z\n"
                            "  active: yes\n  text: Write about {topic}.\n",
         "strategies/zz.yaml": "apiVersion: cplane/v1\nkind: Strategy\nmetadata:\n  name: zz\nspec:\n"
                               "  displayName: Z\n  promptTypes: [zz, z_z]\n"},
        ["config/prompts/zz.yaml:7:11: Prompt/zz: spec.active: expected a boolean (true or false), got 'yes' "
         "(YAML 1.2: write true or false, unquoted)",
         "config/prompts/zz.yaml:8:3: Prompt/zz: undeclared variables in text: {topic}",
         "config/strategies/zz.yaml:7:21: Strategy/zz: spec.promptTypes[1]: Prompt 'z_z' does not exist "
         "(did you mean 'zz'?)"],
    ),
    # 4. Strict types
    "quoted-number": Case(
        {"plans/quoted.yaml": plan("quoted").replace("priceMonthly: 5", 'priceMonthly: "1"')},
        ["config/plans/quoted.yaml:7:17: Plan/quoted: spec.priceMonthly: expected a number, got '1' "
         "(a quoted number is a string)"],
        schema=("plans/quoted.yaml", plan("quoted").replace("priceMonthly: 5", "priceMonthly: 1")),
    ),
    "yes-is-a-string": Case(
        {"plans/yes.yaml": plan("yes", "  active: yes\n")},
        ["config/plans/yes.yaml:9:11: Plan/yes: spec.active: expected a boolean (true or false), got 'yes' "
         "(YAML 1.2: write true or false, unquoted)"],
        schema=("plans/yes.yaml", plan("yes", "  active: true\n")),
    ),
    "integer-refuses-a-fraction": Case(
        {"plans/frac.yaml": plan("frac", "  maxSites: 1.5\n")},
        ["config/plans/frac.yaml:9:13: Plan/frac: spec.maxSites: expected an integer, got 1.5"],
        schema=("plans/frac.yaml", plan("frac", "  maxSites: 1\n")),
    ),
    "number-for-a-string": Case(
        {"plans/num.yaml": plan("num").replace("displayName: X", "displayName: 2025")},
        ["config/plans/num.yaml:6:16: Plan/num: spec.displayName: expected a string, got 2025"],
        schema=("plans/num.yaml", plan("num").replace("displayName: X", 'displayName: "2025"')),
    ),
    # 5. Typed, referenced settings
    "setting-wrong-type": Case(
        {"system_settings/zz.yaml": setting("zz_days", "  schema: {type: integer, minimum: 0}\n  value: fourteen\n")},
        ["config/system_settings/zz.yaml:7:10: SystemSetting/zz_days: spec.value: expected an integer, got 'fourteen'"],
    ),
    "setting-below-minimum": Case(
        {"system_settings/zz.yaml": setting("zz_days", "  schema: {type: integer, minimum: 0}\n  value: -1\n")},
        ["config/system_settings/zz.yaml:7:10: SystemSetting/zz_days: spec.value: expected at least 0, got -1"],
    ),
    "setting-no-is-not-false": Case(
        {"system_settings/zz.yaml": setting("zz_mode", "  schema: {type: boolean}\n  value: no\n")},
        ["config/system_settings/zz.yaml:7:10: SystemSetting/zz_mode: spec.value: expected a boolean (true or false), "
         "got 'no' (YAML 1.2: write true or false, unquoted)"],
    ),
    "setting-enum": Case(
        {"system_settings/zz.yaml": setting("zz_status", "  schema: {enum: [draft, review]}\n  value: drafts\n")},
        ["config/system_settings/zz.yaml:7:10: SystemSetting/zz_status: spec.value: expected one of 'draft', 'review', "
         "got 'drafts' (did you mean 'draft'?)"],
    ),
    "setting-unknown-reference": Case(
        {"system_settings/zz.yaml": setting("zz_plan", "  schema: {x-cplane-ref: Plan}\n  value: prox\n")},
        ["config/system_settings/zz.yaml:7:10: SystemSetting/zz_plan: spec.value: Plan 'prox' does not exist "
         "(did you mean 'pro'?)"],
    ),
    "setting-reference-to-a-removed-plan": Case(
        {"plans/free.yaml": None},
        ["config/system_settings/billing.yaml:9:10: SystemSetting/default_plan: spec.value: Plan 'free' does not exist"],
    ),
    "setting-catalog-reference": Case(
        {"system_settings/zz.yaml": setting("zz_modules", "  schema: {type: object, propertyNames: {x-cplane-ref: module}}\n"
                                                          "  value: {planer: true}\n")},
        ["config/system_settings/zz.yaml:7:10: SystemSetting/zz_modules: spec.value: unknown module 'planer' "
         "(did you mean 'planner'?)"],
    ),
    "setting-nested-value": Case(
        {"system_settings/zz.yaml": setting("zz_days", "  schema: {type: array, items: {type: integer}}\n"
                                                       "  value: [1, two, 3]\n")},
        ["config/system_settings/zz.yaml:7:14: SystemSetting/zz_days: spec.value[1]: expected an integer, got 'two'"],
    ),
    "setting-without-schema": Case(
        {"system_settings/zz.yaml": setting("zz_days", "  value: 3\n")},
        ["config/system_settings/zz.yaml:5:1: SystemSetting/zz_days: missing required field 'schema'"],
        schema=("system_settings/zz.yaml", setting("zz_days", "  schema: {type: integer}\n  value: 3\n")),
    ),
    "setting-invalid-schema": Case(
        {"system_settings/zz.yaml": setting("zz_days", "  schema: {type: integr}\n  value: 3\n")},
        ["config/system_settings/zz.yaml:6:18: SystemSetting/zz_days: spec.schema.type: not a valid JSON Schema: "
         "'integr' is not valid under any of the given schemas"],
    ),
    "setting-reference-to-an-unknown-kind": Case(
        {"system_settings/zz.yaml": setting("zz_plan", "  schema: {x-cplane-ref: Plna}\n  value: pro\n")},
        ["config/system_settings/zz.yaml:6:26: SystemSetting/zz_plan: spec.schema.x-cplane-ref: x-cplane-ref names no "
         "kind or catalog: 'Plna' (did you mean 'Plan'?)"],
    ),
    "setting-value-set-by-an-overlay": Case(
        {"environments/qa.yaml": overlay("    - kind: SystemSetting\n      name: maintenance_mode\n"
                                         "      patch: {value: off}\n")},
        ["config/environments/qa.yaml:9:22: SystemSetting/maintenance_mode: spec.value: expected a boolean "
         "(true or false), got 'off' (YAML 1.2: write true or false, unquoted)"],
    ),
}


def _tree(tmp_path: Path, files: dict[str, str | None]) -> Path:
    root = tmp_path / "config"
    shutil.copytree(CONFIG, root)
    for rel, content in files.items():
        path = root / rel
        if content is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    return root


@pytest.mark.parametrize("name", list(CASES))
def test_corpus_case(name, tmp_path, monkeypatch):
    case = CASES[name]
    monkeypatch.chdir(tmp_path)
    root = _tree(tmp_path, case.files)
    lines = [issue.format() for issue in validate_all(root).issues]
    assert lines == case.expected
    for secret in case.not_shown:
        assert all(secret not in line for line in lines)


def _schema(kind: str) -> dict:
    return json.loads((REPO / "schemas" / f"{kind}.json").read_text())


def _only_document(text: str) -> dict:
    loaded = yaml_rs.loads(text, parse_datetime=False)
    return loaded[0] if isinstance(loaded, list) else loaded


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.schema])
def test_committed_schema_agrees_with_validate(name):
    """Both ways: the committed schema rejects the document validate rejects, and accepts its fix."""
    case = CASES[name]
    rel, fixed = case.schema
    wrong = _only_document(case.files[rel])
    right = _only_document(fixed)
    validator = jsonschema.Draft202012Validator(_schema(wrong["kind"]))
    assert not validator.is_valid(wrong), f"{name}: the committed schema accepts what validate refuses"
    assert validator.is_valid(right), f"{name}: the committed schema refuses the fixed document: " + "; ".join(
        e.message for e in validator.iter_errors(right))


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.schema])
def test_the_fixed_documents_validate(name, tmp_path, monkeypatch):
    case = CASES[name]
    rel, fixed = case.schema
    monkeypatch.chdir(tmp_path)
    root = _tree(tmp_path, {rel: fixed})
    assert [i.format() for i in validate_all(root).issues] == []


def test_typed_settings_for_the_runtime(migrated_engine):
    """The runtime's helper: values of their declared type; a mistyped one (drift) reads as unset."""
    from sqlalchemy import update

    from control_plane.db.models import SystemSetting
    from control_plane.settings import typed_settings

    with migrated_engine.begin() as conn:
        conn.execute(SystemSetting.__table__.insert(), [
            {"key": "maintenance_mode", "value": False, "value_schema": {"type": "boolean"}, "description": "", "is_public": True},
            {"key": "trial_days", "value": 14, "value_schema": {"type": "integer", "minimum": 0}, "description": "", "is_public": True},
            {"key": "default_plan", "value": "free", "value_schema": {"x-cplane-ref": "Plan"}, "description": "", "is_public": False},
        ])
    with migrated_engine.connect() as conn:
        assert typed_settings(conn, ["maintenance_mode", "trial_days", "default_plan", "absent"]) == {
            "maintenance_mode": False, "trial_days": 14, "default_plan": "free"}
    with migrated_engine.begin() as conn:
        conn.execute(update(SystemSetting).where(SystemSetting.key == "maintenance_mode").values(value="no"))
    with migrated_engine.connect() as conn:
        assert typed_settings(conn, ["maintenance_mode", "trial_days"]) == {"trial_days": 14}
