"""Complete diffs (issue 12, item 1): line diffs of text with the changed words marked, lists as element
additions and removals, maps per path, creates with every attribute, nothing ever cut; Markdown within
GitHub's comment limit without cutting a change. Unit tests on hand-built plans, then end to end on
PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

from click.testing import CliRunner
from helpers import load_script
from hypothesis import example, given, settings
from hypothesis import strategies as st

from control_plane.cli.main import main
from control_plane.plans import planfile
from control_plane.plans.model import Change, FieldChange, Plan
from control_plane.reconcile.controller import apply_config, make_plan
from control_plane.render.diff import grouped, opcodes, text_diff, word_diff
from control_plane.render.plan import MARKDOWN_LIMIT, render_markdown, render_text

plan_comment = load_script(".github/scripts/plan_comment.py")

PROMPT = "".join(f"Step {i}: write section {i} of the article in a clear, direct voice.\n" for i in range(1, 40))
PROMPT += "Answer in English.\n"
EDITED = PROMPT.replace("Answer in English.", "Return only valid HTML, no commentary before or after.")
PARAGRAPH = ("Our friendly assistant writes clear, well structured articles for busy readers who want "
             "practical advice quickly and without fluff.")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
AND_MORE = re.compile(r"(\.\.\.|…) and \d+ more")


def update(kind: str, name: str, *fields: tuple[str, object, object], **kw) -> Change:
    return Change(kind, name, "update", fields=[FieldChange(*f) for f in fields], **kw)


def block(text: str, header: str) -> list[str]:
    """The lines of one change in a text plan: from its marker line to the blank line that ends it."""
    lines = text.split("\n")
    start = lines.index(header)
    end = lines.index("", start)
    return lines[start + 1:end]


def details(markdown: str, summary: str) -> str:
    start = markdown.index(f"<details><summary>{summary}</summary>")
    return markdown[start:markdown.index("\n</details>", start)]


# --- text: line diffs --------------------------------------------------------------------------


def test_last_line_of_a_40_line_prompt_is_that_line_with_context_and_nothing_else():
    assert PROMPT.count("\n") == 40
    plan = Plan(changes=[update("Prompt", "content_generation", ("text", PROMPT, EDITED))])
    old, new = PROMPT.splitlines(), EDITED.splitlines()

    text = render_text(plan)
    assert block(text, "  ~ Prompt/content_generation") == [
        "      text: 40 → 40 lines",
        "        @@ -37,4 +37,4 @@",
        *(f"         {line}" for line in old[36:39]),
        f"        -{old[39]}",
        f"        +{new[39]}",
    ]
    for line in old[:36]:
        assert line not in text

    markdown = render_markdown(plan)
    section = details(markdown, "Prompt: 1 change(s)")
    assert "  - `text`: 40 → 40 lines\n\n    ```diff\n    @@ -37,4 +37,4 @@\n" in section
    body = [line[4:] for line in section.split("\n") if line.startswith("    ") and not line.startswith("    ```")]
    assert body == ["@@ -37,4 +37,4 @@", *(f" {line}" for line in old[36:39]), f"-{old[39]}", f"+{new[39]}"]
    for line in old[:36]:
        assert line not in markdown


def test_line_diff_of_lines_added_in_the_middle_and_a_final_newline():
    before = "".join(f"line {i}\n" for i in range(1, 21))
    after = before.replace("line 10\n", "line 10\ninserted a\ninserted b\n").rstrip("\n")
    text = render_text(Plan(changes=[update("Prompt", "p", ("text", before, after))]))
    assert block(text, "  ~ Prompt/p") == [
        "      text: 20 → 22 lines",
        "        @@ -8,6 +8,8 @@",
        *(f"         line {i}" for i in range(8, 11)),
        "        +inserted a",
        "        +inserted b",
        *(f"         line {i}" for i in range(11, 14)),
        "        (final newline removed)",
    ]


def test_one_word_edit_in_a_paragraph_marks_that_word():
    edited = PARAGRAPH.replace("friendly", "cheerful")
    plan = Plan(changes=[update("AuthorProfile", "blog", ("description", PARAGRAPH, edited))])
    text = render_text(plan)
    assert block(text, "  ~ AuthorProfile/blog") == [
        "      description:",
        "        -" + PARAGRAPH.replace("friendly", "[-friendly-]"),
        "        +" + edited.replace("cheerful", "{+cheerful+}"),
    ]
    coloured = render_text(plan, colour=True)
    assert "\x1b[31m-Our \x1b[7mfriendly\x1b[27m assistant" in coloured
    assert "\x1b[32m+Our \x1b[7mcheerful\x1b[27m assistant" in coloured
    assert "[-" not in coloured and "{+" not in coloured  # in colour, reverse video replaces the brackets
    assert ANSI.sub("", coloured) == text.replace("[-friendly-]", "friendly").replace("{+cheerful+}", "cheerful")

    markdown = render_markdown(plan)
    assert ("  - `description`:\n\n    ```diff\n"
            f"    -{PARAGRAPH.replace('friendly', '[-friendly-]')}\n"
            f"    +{edited.replace('cheerful', '{+cheerful+}')}\n    ```") in markdown


def test_words_in_a_multi_line_text_and_unrelated_lines_unmarked():
    before = "Intro.\nWrite in a warm, friendly tone for new readers.\nOutro.\n"
    after = "Intro.\nWrite in a warm, formal tone for new readers.\nA different closing line altogether!\n"
    text = render_text(Plan(changes=[update("Prompt", "p", ("text", before, after))]))
    lines = block(text, "  ~ Prompt/p")
    assert "        -Write in a warm, [-friendly-] tone for new readers." in lines
    assert "        +Write in a warm, {+formal+} tone for new readers." in lines
    assert "        -Outro." in lines and "        +A different closing line altogether!" in lines


def test_control_characters_in_text_are_escaped():
    before = "line one\nline two\n"
    after = "line one\nline \x1b[2Jtwo\n"
    text = render_text(Plan(changes=[update("Prompt", "p", ("text", before, after))]))
    assert "\x1b[2J" not in text and "\\x1b" in text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abcd"), max_size=30), st.lists(st.sampled_from("abcd"), max_size=30))
def test_opcodes_turn_one_sequence_into_the_other_and_hunks_hold_every_change(a, b):
    codes = opcodes(a, b)
    rebuilt = []
    for tag, i1, i2, j1, j2 in codes:
        assert (a[i1:i2] == b[j1:j2]) if tag == "equal" else tag in ("replace", "delete", "insert")
        rebuilt += b[j1:j2]
    assert rebuilt == b and [x for _, i1, i2, _, _ in codes for x in a[i1:i2]] == a
    changed = {(i1, j1) for tag, i1, _, j1, _ in codes if tag != "equal"}
    assert changed == {(i1, j1) for group in grouped(codes, 3) for tag, i1, _, j1, _ in group if tag != "equal"}


def test_huge_values_diff_fast_without_word_marks_they_cannot_afford():
    line = " ".join(f"w{i}" for i in range(20_000))
    far = line.replace("w100 ", "x ").replace("w15000", "y")
    assert word_diff(line, far) is None  # too far apart to match affordably: the lines are the change
    near = line.replace("w15000", "y")
    removed, added = word_diff(line, near)
    assert [t for t, changed in removed if changed] == ["w15000"] and [t for t, c in added if c] == ["y"]
    same = "\n".join("x" for _ in range(20_000))
    diff = text_diff(same, same[:20_000] + "y" + same[20_001:])
    assert [line.tag + line.text for hunk in diff.hunks for line in hunk.lines if line.tag != " "] == ["-x", "+y"]


# --- lists and maps ----------------------------------------------------------------------------


FEATURES = ["ai_content", "ai_images", "api_access", "webhooks", "multi_language"]
PROVIDERS = {
    "openai": {"baseUrl": "https://api.openai.com/v1", "timeoutSeconds": 30, "models": ["gpt-4.1", "gpt-4.1-mini"]},
    "runware": {"baseUrl": "https://api.runware.ai/v1", "timeoutSeconds": 90},
}


def test_list_element_removed_and_nested_map_value_changed_are_exactly_that():
    providers = json.loads(json.dumps(PROVIDERS))
    providers["openai"]["timeoutSeconds"] = 60
    providers["openai"]["models"].append("gpt-5")
    plan = Plan(changes=[
        update("Plan", "pro", ("features", FEATURES, [f for f in FEATURES if f != "webhooks"])),
        update("IntegrationDefaults", "default", ("providers", PROVIDERS, providers)),
    ])
    text = render_text(plan)
    assert block(text, "  ~ Plan/pro") == ['      features: - "webhooks"']
    assert block(text, "  ~ IntegrationDefaults/default") == [
        "      providers.openai.timeoutSeconds: 30 → 60",
        '      providers.openai.models: + "gpt-5"',
    ]
    markdown = render_markdown(plan)
    assert details(markdown, "Plan: 1 change(s)").split("\n")[2:] == [
        "- `~` **pro** will be updated in place", '  - `features`: `-` `"webhooks"`', ""]
    assert details(markdown, "IntegrationDefaults: 1 change(s)").split("\n")[2:] == [
        "- `~` **default** will be updated in place",
        "  - `providers.openai.timeoutSeconds`: `30` → `60`",
        '  - `providers.openai.models`: `+` `"gpt-5"`',
        "",
    ]


def test_list_additions_a_pure_reorder_and_maps_in_lists():
    sections = [{"heading": "Intro", "guidance": "Hook the reader."}, {"heading": "Body", "guidance": "Steps."}]
    edited = [sections[0], {"heading": "Body", "guidance": "Numbered steps."}, {"heading": "FAQ"}]
    plan = Plan(changes=[update(
        "Strategy", "how-to",
        ("modules", ["planner", "writer"], ["planner", "writer", "webhooks"]),
        ("prompt_types", ["title", "outline"], ["outline", "title"]),
        ("sections", sections, edited),
        ("settings", {"a": 1, "gone": True}, {"a": 1, "new key": "x"}),
    )])
    assert block(render_text(plan), "  ~ Strategy/how-to") == [
        '      modules: + "webhooks"',
        '      prompt_types: reordered ["title", "outline"] → ["outline", "title"]',
        '      sections[1].guidance: "Steps." → "Numbered steps."',
        '      sections: + {"heading": "FAQ"}',
        "      settings.gone: - true",
        '      settings["new key"]: + "x"',
    ]


def test_secrets_stay_masked_in_updates_and_creates():
    plan = Plan(changes=[
        update("IntegrationDefaults", "default",
               ("api_keys_encrypted", {"openai": "(sensitive)"}, {"openai": "(sensitive)", "runware": "(sensitive)"})),
        update("PaymentMethod", "stripe", ("secret_key_encrypted", "(sensitive) (changed)", "(sensitive)")),
        Change("PaymentMethod", "paypal", "create", values={"name": "PayPal", "currencies": ["USD"]},
               fields=[FieldChange("secret_key_encrypted", None, "(sensitive)")]),
    ])
    text = render_text(plan)
    assert block(text, "  ~ IntegrationDefaults/default") == ['      api_keys_encrypted.runware: + "(sensitive)"']
    assert block(text, "  ~ PaymentMethod/stripe") == [
        '      secret_key_encrypted: "(sensitive) (changed)" → "(sensitive)"']
    assert block(text, "  + PaymentMethod/paypal") == [
        '      name: "PayPal"', '      currencies: ["USD"]', '      secret_key_encrypted: "(sensitive)"']


# --- creates, canonical values, nothing cut ------------------------------------------------------


def test_creates_list_every_attribute_in_canonical_form():
    values = {
        "name": "Enterprise", "price_monthly": Decimal("299.0"), "price_yearly": Decimal("2990"),
        "modules": ["planner", "writer"], "settings": {"sso": True, "limits": {"sites": 100}},
        "sections": [{"heading": "At a glance"}], "description": None,
    }
    plan = Plan(changes=[
        Change("Plan", "enterprise", "create", values=values),
        Change("Prompt", "rewrite", "create", values={"text": "First line.\n  indented\n\nlast\n"}),
        update("SystemSetting", "launch", ("value", {"at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},
                                           {"at": datetime(2026, 2, 2, 3, 4, 5, tzinfo=UTC)})),
    ])
    expected = [
        '      name: "Enterprise"',
        '      price_monthly: "299.00"',
        '      price_yearly: "2990.00"',
        '      modules: ["planner", "writer"]',
        "      settings.sso: true",
        "      settings.limits.sites: 100",
        '      sections[0].heading: "At a glance"',
        "      description: null",
    ]
    text = render_text(plan)
    assert block(text, "  + Plan/enterprise") == expected
    assert "      text: |\n        First line.\n          indented\n        \n        last\n" in text
    assert block(text, "  ~ SystemSetting/launch") == [
        '      value.at: "2026-01-02T03:04:05+00:00" → "2026-02-02T03:04:05+00:00"']
    # A saved plan (decimals as JSON strings) reads exactly like the plan it was saved from.
    assert render_text(planfile.loads(planfile.dumps(plan))) == text
    markdown = render_markdown(plan)
    assert '  - `price_monthly`: `"299.00"`' in markdown and '  - `sections[0].heading`: `"At a glance"`' in markdown
    assert "  - `text`: 4 lines\n\n    ```text\n    First line.\n      indented\n\n    last\n    ```" in markdown


def test_no_value_is_cut_and_every_change_is_listed():
    long_text = "word " * 400
    long_list = [f"item-{i}" for i in range(300)]
    changes = [Change("SeedKeyword", f"kw-{i}", "create", values={"keyword": f"kw-{i}", "notes": long_text})
               for i in range(250)]
    changes.append(update("Plan", "pro", ("modules", [], long_list), ("description", "short", long_text)))
    unmanaged = [{"kind": "Role", "name": f"role-{i}", "reason": "not in config"} for i in range(250)]
    plan = Plan(changes=changes, unmanaged=unmanaged)
    text = render_text(plan)
    markdown = render_markdown(plan, limit=10**9)
    for rendered in (text, markdown):
        assert not AND_MORE.search(rendered)
        assert rendered.count(json.dumps(long_text)) == 250
        assert all(f"kw-{i}" in rendered for i in range(250))
        assert all(f"role-{i}:" in rendered for i in range(250))
    assert '      modules: + "item-299"' in text
    assert "        +" + long_text in text


# --- markdown within GitHub's limit -------------------------------------------------------------


def test_markdown_over_the_limit_says_so_links_the_artifact_and_cuts_no_change():
    paragraph = "A long attribute that makes every create big. " * 20
    changes = [Change("SeedKeyword", f"keyword-{i}", "create", values={"keyword": f"keyword-{i}", "notes": paragraph})
               for i in range(300)]
    changes += [Change("CreditCost", f"cost-{i}", "create", values={"credits": i}) for i in range(3)]
    changes.append(update("Plan", "pro", ("price_monthly", "79.00", "89.00")))
    plan = Plan(changes=changes)
    artifact = "the `cplane-plan` artifact of [this workflow run](https://example.invalid/runs/1)"

    full = render_markdown(plan, limit=10**9)
    assert len(full) > 65_536
    markdown = render_markdown(plan, artifact=artifact)
    assert len(markdown) <= MARKDOWN_LIMIT
    assert "**This plan is too long for a pull-request comment**" in markdown
    assert f"Every change is in {artifact}." in markdown
    assert "**Not shown here**" in markdown and "- SeedKeyword: 300 change(s)" in markdown
    # The summary table is complete; the sections shown are whole, the update's first.
    assert "| SeedKeyword | 300 | 0 | 0 | 0 | 0 |" in markdown
    assert details(markdown, "Plan: 1 change(s)") == details(full, "Plan: 1 change(s)")
    assert details(markdown, "CreditCost: 3 change(s)") == details(full, "CreditCost: 3 change(s)")
    assert "keyword-0" not in markdown and markdown.count("<details>") == markdown.count("</details>")
    # The comment built from it fits and is not cut by the comment script's own guard.
    body = plan_comment.build_body(markdown, plan_exit_code=2, run_url="https://example.invalid/runs/1")
    assert len(body) < 65_536 and "too long for a comment" not in body and markdown.strip() in body

    small = Plan(changes=changes[-4:])
    assert "too long" not in render_markdown(small, artifact=artifact)


def test_compact_counts_creates_per_kind_only_when_asked():
    plan = Plan(changes=[Change("SeedKeyword", f"k{i}", "create", values={"keyword": f"k{i}"}) for i in range(30)]
                + [update("Plan", "pro", ("price_monthly", "79.00", "89.00"))])
    compact = render_text(plan, compact=True)
    assert "  + SeedKeyword: 30 to create (not listed: --compact)" in compact
    assert "SeedKeyword/k1" not in compact and '      price_monthly: "79.00" → "89.00"' in compact
    assert "SeedKeyword/k29" in render_text(plan)
    assert "- `+` 30 to create (not listed: `--compact`)" in render_markdown(plan, compact=True)
    assert "**k29**" in render_markdown(plan)


def test_rendering_does_not_import_click():
    code = "import sys, control_plane.render.plan, control_plane.render.diff; print('click' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- end to end on PostgreSQL -------------------------------------------------------------------


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_first_apply_of_the_repo_config_renders_every_object_with_its_attributes(config_tree, pg_url, engine_for,
                                                                                  monkeypatch):
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_render_e2e_secret")
    root = str(config_tree.root)
    plan = make_plan(engine_for(pg_url), config_tree.root).plan
    assert plan.summary["create"] > 900 and plan.summary["create"] == len(plan.changes)

    text = cli("plan", "--config", root, "--database-url", pg_url)
    assert text.exit_code == 0, text.output
    output = text.output
    assert not AND_MORE.search(output)
    for change in plan.changes:
        lines = block(output, f"  + {change.kind}/{change.name}")
        for column, value in change.values.items():
            assert any(line.startswith(f"      {column}") for line in lines), (change.kind, change.name, column)
            if isinstance(value, (int, str)) and not isinstance(value, bool) and "\n" not in str(value):
                assert f"      {column}: {json.dumps(value, ensure_ascii=False)}" in lines
    stripe = block(output, "  + PaymentMethod/stripe")
    assert '      secret_key_encrypted: "(sensitive)"' in stripe
    assert "sk_test_render_e2e_secret" not in output

    markdown = cli("plan", "--config", root, "--database-url", pg_url, "--format", "markdown",
                   "--artifact", "[the plan artifact](https://example.invalid/artifact)")
    assert markdown.exit_code == 0
    assert len(markdown.stdout) <= MARKDOWN_LIMIT + 1
    assert "too long for a pull-request comment" in markdown.stdout
    assert "[the plan artifact](https://example.invalid/artifact)" in markdown.stdout
    assert not AND_MORE.search(markdown.stdout)
    full = render_markdown(plan, limit=10**9)
    assert all(f"**{change.name}** will be created" in full for change in plan.changes)

    compact = cli("plan", "--config", root, "--database-url", pg_url, "--compact")
    keywords = sum(1 for change in plan.changes if change.kind == "SeedKeyword")
    assert f"  + SeedKeyword: {keywords} to create (not listed: --compact)" in compact.output
    assert "+ SeedKeyword/" not in compact.output
    assert "--compact" not in cli("apply", "--help").output  # never at apply's confirmation prompt


def test_edits_to_the_repo_config_plan_as_exactly_those_diffs(config_tree, pg_url, engine_for):
    engine = engine_for(pg_url)
    assert apply_config(engine, config_tree.root, actor="test").applied
    pro = config_tree.root / "plans" / "pro.yaml"
    pro.write_text(pro.read_text().replace("    - webhooks\n", "").replace("small agencies", "large agencies"))
    defaults = config_tree.root / "integrations" / "default.yaml"
    defaults.write_text(defaults.read_text().replace("timeoutSeconds: 120", "timeoutSeconds: 60", 1))
    prompt = config_tree.root / "prompts" / "content_generation.yaml"
    source = prompt.read_text()
    last = "      no Markdown, no commentary before or after the content.\n"
    # The base prompt is the file's first document; its text ends with this line.
    assert source.index(last) < source.index("\n---\n")
    prompt.write_text(source.replace(last, "      no Markdown, and nothing before or after the content.\n", 1))

    result = cli("plan", "--config", str(config_tree.root), "--database-url", pg_url, "--detailed-exitcode")
    assert result.exit_code == 2, result.output
    out = result.output
    assert block(out, "  ~ Plan/pro") == [
        "      description:",
        "        -For growing content teams and [-small-] agencies: ten sites, five seats, bulk generation, "
        "automation, custom prompts and strategies, API access and webhooks.",
        "        +For growing content teams and {+large+} agencies: ten sites, five seats, bulk generation, "
        "automation, custom prompts and strategies, API access and webhooks.",
        '      features: - "webhooks"',
    ]
    assert block(out, "  ~ IntegrationDefaults/default") == ["      providers.openai.timeoutSeconds: 120 → 60"]
    prompt_lines = block(out, "  ~ Prompt/content_generation")
    assert prompt_lines[:2] == ["      text: 32 → 32 lines", "        @@ -29,4 +29,4 @@"]
    assert prompt_lines[-2:] == [
        "        -  no Markdown, [-no commentary-] before or after the content.",
        "        +  no Markdown, {+and nothing+} before or after the content.",
    ]
    assert len([line for line in prompt_lines if line.startswith("         ")]) == 3  # three lines of context
    assert "You are writing for" not in out

    markdown = cli("plan", "--config", str(config_tree.root), "--database-url", pg_url, "--format", "markdown").output
    assert '  - `features`: `-` `"webhooks"`' in markdown
    assert "  - `providers.openai.timeoutSeconds`: `120` → `60`" in markdown
    assert "    +  no Markdown, {+and nothing+} before or after the content." in markdown
    assert "You are writing for" not in markdown


def test_a_saved_plan_file_renders_as_the_plan_it_holds(tmp_path):
    """What the workflows put in their artifact: `python -m control_plane.render plan.json > plan.txt`."""
    plan = Plan(changes=[update("Prompt", "content_generation", ("text", PROMPT, EDITED)),
                         Change("Plan", "enterprise", "create", values={"price_monthly": Decimal("299.0")})])
    saved = tmp_path / "plan.json"
    planfile.write_plan(plan, saved)
    run = [sys.executable, "-m", "control_plane.render", str(saved)]
    text = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert text == render_text(plan) + "\n"
    markdown = subprocess.run([*run, "--format", "markdown"], capture_output=True, text=True, check=True).stdout
    assert markdown == render_markdown(plan)
    saved.write_text("{}")
    refused = subprocess.run(run, capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")


_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12),
                  st.decimals(allow_nan=False, allow_infinity=False, places=3))
_VALUE = st.recursive(_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text("abc.[] ", max_size=4), inner, max_size=3)),
                      max_leaves=6)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "price_monthly", "max_sites", "is_active", "settings", "text",
                                        "description", "search_volume", "cpc"]), _VALUE, max_size=6),
       st.sampled_from(["Plan", "SeedKeyword", "Prompt", "NoSuchKind"]))
@example({"price_monthly": Decimal("12345678901234567890123456789"), "cpc": Decimal("1E+1")}, "Plan")
@example({"cpc": Decimal("1.005"), "search_volume": True, "difficulty": Decimal("7")}, "SeedKeyword")
def test_create_fast_path_renders_as_the_general_path(values, kind):
    """Creates' common scalar attributes are formatted directly (a first apply renders 100,000 of them);
    the text must be exactly what create_attributes + _attribute_text give for any values, numeric
    columns, maps, lists, multi-line text and masked secrets included."""
    from control_plane.render.diff import create_attributes
    from control_plane.render.plan import _attribute_text, _create_text

    change = Change(kind, "x", "create", values=values,
                    fields=[FieldChange("secret_key_encrypted", None, "(sensitive)")])
    fast: list[str] = []
    _create_text(change, fast)
    general = [line for path, value in create_attributes(change) for line in _attribute_text(path, value, "      ")]
    assert fast == general


def _every_change_type_plan() -> Plan:
    """A plan with every action and cause, a policy violation, impact, unmanaged rows, a scheduled step,
    warnings, errors and a pending migration: what the streamed text must reproduce byte for byte."""
    from control_plane.plans.model import ScheduledStep

    return Plan(
        changes=[
            Change("Plan", "enterprise", "create", values={"price_monthly": Decimal("299.0"), "name": "Enterprise",
                                                           "settings": {"a": [1, {"b": "x\ny"}]}, "is_active": True},
                   fields=[FieldChange("secret_key_encrypted", None, "(sensitive)")]),
            Change("SeedKeyword", "tech/ai/llm", "create", values={"keyword": "llm", "search_volume": 10, "cpc": None}),
            update("Prompt", "content_generation", ("text", PROMPT, EDITED), cause="drift",
                   policy_violations=[{"policy": "p", "severity": "error", "message": "no"},
                                      {"policy": "q", "severity": "warning", "message": "hm"}]),
            Change("Plan", "legacy", "adopt", cause="adopt", fields=[FieldChange("max_sites", 1, 3)],
                   impact={"accounts": 2}),
            Change("Industry", "old", "retire", fields=[FieldChange("is_active", True, False)], impact={"sites": 4},
                   reason="referenced by 4 sites"),
            Change("Role", "gone", "delete", reason="removed from config", impact={"members": 0}),
        ],
        unmanaged=[{"kind": "Plan", "name": "hand-made", "reason": "not in config and not managed by cplane"}],
        scheduled=[ScheduledStep("2027-01-01T00:00:00Z", ["Plan/pro price"],
                                 [update("Plan", "pro", ("price_monthly", Decimal("10"), Decimal("12")))])],
        warnings=["a warning"], errors=["an error"], pending_migrations=2,
    )


@given(st.integers(1, 40))
@settings(max_examples=25, deadline=None)
def test_streamed_text_is_the_rendered_text_byte_for_byte(piece_lines):
    """`cplane plan` and `apply` write the text plan in pieces as it is rendered (render.plan.text_pieces);
    joined they are exactly render_text + the newline click.echo adds, for every change type, in colour
    or not, compact or not, whatever the piece size."""
    import control_plane.render.plan as render_plan

    plan = _every_change_type_plan()
    kept = render_plan.PIECE_LINES
    render_plan.PIECE_LINES = piece_lines
    try:
        for colour in (False, True):
            for compact in (False, True):
                pieces = list(render_plan.text_pieces(plan, colour=colour, compact=compact))
                assert "".join(pieces) == render_text(plan, colour=colour, compact=compact) + "\n"
                assert all(p.endswith("\n") for p in pieces)
        assert "".join(render_plan.text_pieces(Plan())) == render_text(Plan()) + "\n"
    finally:
        render_plan.PIECE_LINES = kept


def test_cli_plan_text_is_streamed_as_click_echo_wrote_it(monkeypatch):
    """The CLI's streamed text (echo_text) is the bytes `click.echo(render_text(...))` wrote before."""
    import click

    from control_plane.cli.reconcile import echo_text

    plan = _every_change_type_plan()

    @click.command()
    def streamed():
        echo_text(plan, colour=False)

    @click.command()
    def whole():
        click.echo(render_text(plan, colour=False))

    runner = CliRunner()
    assert runner.invoke(streamed).output_bytes == runner.invoke(whole).output_bytes
