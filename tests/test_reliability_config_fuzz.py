"""Hostile config input (issue 8.3): the REAL config tree, mutated, through `validate`, `plan` and `apply`.

Every case must end in exit 0 or 1 within a time bound, with no traceback and no internal error
(`error: SomeException: ... (run with --debug for details)` is the CLI's last-resort net: reaching
it is a bug), every error as one `FILE:LINE:COL: KIND/NAME: message` line, and nothing written to
the database when the config is invalid (`apply --auto-approve` is run on every invalid case).

Examples: CPLANE_FUZZ_EXAMPLES (default 40, derandomized when CI is set); per-command time bound:
CPLANE_FUZZ_TIME_BOUND seconds (default 5). A long local run:

    CPLANE_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/test_reliability_config_fuzz.py -q
"""

from __future__ import annotations

import gc
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.cli.main import main
from control_plane.db.counters import COUNTED_TABLES

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
FILES = sorted(str(p.relative_to(CONFIG)) for p in CONFIG.rglob("*.yaml"))
EXAMPLES = int(os.environ.get("CPLANE_FUZZ_EXAMPLES", "40"))
TIME_BOUND = float(os.environ.get("CPLANE_FUZZ_TIME_BOUND", "5"))
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ENV = {
    "CPLANE_SECRET_KEY": "fuzz-key", "CPLANE_ENV": None,
    **{v: f"fuzz-{v.lower()}" for v in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "PAYPAL_CLIENT_SECRET",
                                        "PAYPAL_WEBHOOK_ID", "OPENAI_API_KEY", "RUNWARE_API_KEY")},
}
ERROR_LINE = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>[1-9]\d*):(?P<col>[1-9]\d*): (?P<kind>[^/]+)/(?P<name>.*?): \S.*$")
INVALID_HEAD = re.compile(r"^error: the config is invalid \((\d+) error\(s\)\); nothing was planned:$")
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=CI, **({"database": None} if CI else {}),
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                HealthCheck.data_too_large])


# --- fixtures ------------------------------------------------------------------------------------


# The rows of a freshly migrated database: the schema revision, the database's identity (lineage
# id) and one change counter per counted table.
MIGRATED_EMPTY = {"alembic_version": 1, "cplane_database": 1, "cplane_change_counters": len(COUNTED_TABLES)}


@pytest.fixture(scope="module")
def fuzz_db(module_pg_url):
    """A migrated, empty PostgreSQL database shared by the module: no case may ever write to it."""
    from control_plane.db.engine import make_engine, upgrade

    engine = make_engine(module_pg_url)
    upgrade(engine)
    try:
        yield module_pg_url, engine
    finally:
        engine.dispose()


def row_counts(engine) -> dict[str, int]:
    from sqlalchemy import inspect, text

    tables = inspect(engine).get_table_names()
    union = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM \"{t}\"" for t in tables)
    with engine.connect() as conn:
        return {t: n for t, n in conn.execute(text(union)) if n}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A copy of the real config tree; each case edits one file and the file is restored after."""
    root = tmp_path_factory.mktemp("fuzz") / "config"
    shutil.copytree(CONFIG, root)
    return root


class Edited:
    def __init__(self, root: Path, relative: str, content: bytes):
        self.path = root / relative
        self.original = self.path.read_bytes() if self.path.exists() else None
        self.content = content

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(self.content)
        return self

    def __exit__(self, *exc):
        from control_plane.config.loader import clear_locate_cache

        if self.original is None:
            self.path.unlink()
        else:
            self.path.write_bytes(self.original)
        clear_locate_cache()  # do not keep parse trees of 1 MiB files between cases


# --- the checks ----------------------------------------------------------------------------------


def invoke(*args: str):
    """Run a command in-process; its cost is measured in CPU seconds of this process, which other
    tests loading the machine do not move (wall-clock time does: it is not asserted)."""
    gc.collect()  # the garbage of earlier (1 MiB) cases is not this command's cost
    cpu = time.process_time()
    result = CliRunner().invoke(main, list(args), env=ENV)
    return result, time.process_time() - cpu


def check_common(result, elapsed: float, what: str) -> None:
    everything = result.stdout + result.stderr
    assert result.exit_code in (0, 1), f"{what}: exit {result.exit_code} {result.exception!r}\n{everything[-2000:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), f"{what}: {result.exception!r}"
    assert "Traceback" not in everything, f"{what}: {everything[-2000:]}"
    assert "run with --debug for details" not in result.stderr, f"{what}: internal error: {result.stderr[-2000:]}"
    assert elapsed < TIME_BOUND, f"{what} took {elapsed:.1f} CPU seconds"


def check_validate(result, elapsed: float) -> list[str]:
    check_common(result, elapsed, "validate")
    if result.exit_code == 0:
        assert re.search(r": \d+ objects valid$", result.stdout.strip()), result.stdout[-500:]
        return []
    lines = result.stderr.rstrip("\n").split("\n")
    assert re.fullmatch(r"\d+ error\(s\)", lines[-1]), lines[-1]
    errors = lines[:-1]
    assert len(errors) == int(lines[-1].split()[0]) >= 1
    bad = [ln for ln in errors if not ERROR_LINE.match(ln)]
    assert not bad, f"not FILE:LINE:COL: KIND/NAME: message: {bad[:3]}"
    return errors


def check_plan(result, elapsed: float) -> None:
    check_common(result, elapsed, "plan")
    if result.exit_code == 0:
        assert "to create" in result.stdout or "No changes." in result.stdout, result.stdout[-500:]
        return
    lines = [ln for ln in result.stderr.rstrip("\n").split("\n") if not ln.lower().startswith("warning")]
    head = INVALID_HEAD.match(lines[0])
    if head is None:  # any other refusal: exactly one line
        assert len(lines) == 1 and lines[0].startswith("error: "), lines[:5]
        return
    body = lines[1:]
    if body and re.fullmatch(r"\.\.\. and \d+ more", body[-1]):
        body = body[:-1]
    assert 1 <= len(body) <= 50
    assert all(ERROR_LINE.match(ln) for ln in body), body[:3]


def run_case(tree: Path, fuzz_db) -> tuple[int, int, list[str]]:
    """validate, plan and (when invalid) apply the tree; returns the exit codes and validate's errors."""
    url, engine = fuzz_db
    validated, t_validate = invoke("validate", "--config", str(tree))
    errors = check_validate(validated, t_validate)
    planned, t_plan = invoke("plan", "--config", str(tree), "--database-url", url)
    check_plan(planned, t_plan)
    # plan validates the base config only; validate also checks every environment: so it may only be stricter.
    assert not (planned.exit_code == 1 and validated.exit_code == 0), planned.stderr[-1500:]
    if planned.exit_code == 1:
        applied, t_apply = invoke("apply", "--auto-approve", "--config", str(tree), "--database-url", url)
        check_common(applied, t_apply, "apply")
        assert applied.exit_code == 1
    elif validated.exit_code == 1:
        # The base config is valid: the error is in an overlay. Planning that environment must
        # refuse, and so must applying it.
        from control_plane.config.validate import overlay_environments

        refused = []
        for env in overlay_environments(tree):
            env_plan, t_env = invoke("plan", "--config", str(tree), "--database-url", url, "--env", env)
            check_plan(env_plan, t_env)
            if env_plan.exit_code == 1:
                refused.append(env)
                applied, t_apply = invoke("apply", "--auto-approve", "--config", str(tree), "--database-url", url,
                                          "--env", env)
                check_common(applied, t_apply, "apply")
                assert applied.exit_code == 1
        assert refused, "validate refused the tree but every environment plans"
    assert row_counts(engine) == MIGRATED_EMPTY, "the database was written to"
    return validated.exit_code, planned.exit_code, errors


# --- property-based mutations of the real tree ---------------------------------------------------

HOSTILE_TEXT = [
    "\u202eevil\u202c", "\u200b", "\ufeffbom", "漢字テキスト", "🙂" * 20, "a\u0000b", "\x01\x02\x7f", "e\u0301",
    "'; DROP TABLE plans; --", "{{ topic }}", "${HOME}", "*alias", "&anchor", "!!python/object/apply:os.system ['true']",
    "null", "~", "yes", "0x1F", "1e400", "-.inf", ".nan", "\t\r\n", "x" * 5000, "\U0010fffd", "\\", '"', "'",
]
SNIPPETS = [
    "\0", "\t", "  - [", "x: &a [*a]\n", "<<: *nope\n", "%YAML 1.1\n---\n", "--- !!python/object:os.system\n", "\u202e",
    "\ufeff", ": :\n", "? [a]: b\n", "key: {\n", "'", '"', "*undefined\n", "!!binary AAAA\n", "\r", "---\n",
    "...\n", "foo: bar\nfoo: baz\n", "spec: null\n", "kind: Plan\n", "apiVersion: cplane/v2\n", "- - - -\n",
]


def _values():
    scalar = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), st.sampled_from(HOSTILE_TEXT),
    )
    return st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                        max_leaves=10)


def _containers(node, out):
    if isinstance(node, dict):
        out.append(node)
        for v in node.values():
            _containers(v, out)
    elif isinstance(node, list):
        out.append(node)
        for v in node:
            _containers(v, out)
    return out


def _structural(docs: list, op: str, index: int, value) -> list:
    containers = _containers(docs, [])[1:] or [docs]
    target = containers[index % len(containers)]
    if not target:
        return docs
    if isinstance(target, dict):
        key = list(target)[index % len(target)]
        if op == "delete":
            del target[key]
        elif op == "retype":
            target[key] = value
        elif op == "rename":
            target[f"{key}\u200b" if index % 2 else f"{key}x"] = target.pop(key)
        elif op == "huge":
            target[key] = ("\u202e漢🙂x" * 262144)[: 1 << 20]  # 1 Mi characters
        else:
            target[f"extra{index}"] = value
    else:
        i = index % len(target)
        if op == "delete":
            target.pop(i)
        elif op == "huge":
            target[i] = "y" * (1 << 20)
        elif op == "insert":
            target.insert(i, value)
        else:
            target[i] = value
    return docs


def _raw(text: str, op: str, index: int, snippet: str) -> str:
    lines = text.split("\n")
    at = index % (len(lines) + 1)
    if op == "splice":
        return "\n".join(lines[:at] + [snippet + (lines[at] if at < len(lines) else "")] + lines[at + 1:])
    if op == "truncate":
        return text[: index % (len(text) + 1)]
    if op == "duplicate-line":
        return "\n".join(lines[: at + 1] + lines[at:at + 1] + lines[at + 1:])
    if op == "deep":
        depth = (300, 5000)[index % 2]
        opener, closer = (("[", "]"), ("{a: ", "}"))[(index // 2) % 2]
        tail = closer * depth if (index // 4) % 2 == 0 else ""  # balanced, or never closed
        return text.rstrip("\n") + f"\nextra: {opener * depth}{'1' if opener != '[' else ''}{tail}\n"
    if op == "laughs":
        return text + "\n---\n" + BILLION_LAUGHS
    if op == "indent":
        return "\n".join(("  " + ln) if i >= at else ln for i, ln in enumerate(lines))
    raise AssertionError(op)


@st.composite
def mutations(draw):
    relative = draw(st.sampled_from(FILES))
    index = draw(st.integers(0, 10_000))
    kind = draw(st.sampled_from(["structural", "raw"]))
    if kind == "structural":
        op = draw(st.sampled_from(["delete", "retype", "rename", "insert", "huge"]))
        return relative, kind, op, index, draw(_values())
    op = draw(st.sampled_from(["splice", "truncate", "duplicate-line", "deep", "laughs", "indent"]))
    return relative, kind, op, index, draw(st.sampled_from(SNIPPETS))


def mutate(relative: str, kind: str, op: str, index: int, arg) -> bytes:
    text = (CONFIG / relative).read_text()
    if kind == "raw":
        return _raw(text, op, index, arg).encode("utf-8", "surrogatepass")
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:  # YAML 1.2 that PyYAML (1.1) does not read: mutate the text instead
        return _raw(text, "splice", index, str(arg)[:100]).encode("utf-8", "surrogatepass")
    docs = _structural(docs, op, index, arg)
    return yaml.safe_dump_all(docs, allow_unicode=True, sort_keys=False).encode("utf-8", "surrogatepass")


@FUZZ_SETTINGS
@given(mutation=mutations())
def test_mutated_real_tree_is_validated_planned_and_refused_cleanly(tree, fuzz_db, mutation):
    relative = mutation[0]
    with Edited(tree, relative, mutate(*mutation)):
        run_case(tree, fuzz_db)


# --- named hostile documents ---------------------------------------------------------------------

BILLION_LAUGHS = "lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
)
HEAD = "apiVersion: cplane/v1\nkind: Plan\nmetadata: {name: hostile}\nspec:\n"
NESTED = 5000
HOSTILE = {
    # name: (file content, text the error must contain, or None when the document may be valid)
    "billion-laughs": (BILLION_LAUGHS.encode(), "billion laughs"),
    "billion-laughs-in-spec": ((HEAD + "  x:\n" + "".join("    " + ln + "\n" for ln in BILLION_LAUGHS.splitlines())).encode(),
                               "billion laughs"),
    "recursive-alias": (b"a: &a [*a]\n", ""),
    "deep-flow-lists": ((HEAD + "  features: " + "[" * NESTED + "]" * NESTED + "\n").encode(), "nesting too deep"),
    "deep-flow-maps": ((HEAD + "  x: " + "{a: " * NESTED + "1" + "}" * NESTED + "\n").encode(), "nesting too deep"),
    "deep-unclosed": ((HEAD + "  x: " + "[{" * NESTED + "\n").encode(), ""),
    "deep-block": ((HEAD + "".join(" " * (i + 2) + "- \n" for i in range(NESTED))).encode(), ""),
    "huge-display-name": ((HEAD + '  displayName: "' + "x" * (1 << 20) + '"\n').encode(), "at most"),
    "huge-key": ((HEAD + "  " + "k" * (1 << 20) + ": 1\n").encode(), ""),  # implicit keys stop at 1024 chars
    "huge-file-of-keys": ((HEAD + "".join(f"  k{i}: {i}\n" for i in range(3_000))).encode(), "unknown field"),
    "nul-byte": ((HEAD + "  displayName: a\0b\n").encode(), "NUL"),
    "nul-escape": ((HEAD + '  displayName: "a\\0b"\n').encode(), "NUL"),
    "nul-escape-in-key": ((HEAD + '  "a\\0b": 1\n').encode(), "NUL"),
    "rtl-override-name": ("apiVersion: cplane/v1\nkind: Plan\nmetadata: {name: \"pro\u202egnp\"}\nspec: {}\n".encode(), ""),
    "lone-surrogate-escape": ((HEAD + '  displayName: "\\ud800"\n').encode(), "surrogate"),
    "latin1-bytes": ((HEAD + "  displayName: caf\xe9\n").encode("latin-1"), ""),
    "python-tag": (b"--- !!python/object/apply:os.system ['touch /tmp/pwned']\n", ""),
    "yaml-1.1-directive": (b"%YAML 1.1\n---\n" + HEAD.encode() + b"  displayName: yes\n", ""),
    "bom-in-the-middle": ((HEAD + "  displayName: a\ufeffb\n  \ufeffpriceMonthly: 1\n").encode(), ""),
    "duplicate-keys": ((HEAD + "  displayName: a\n  displayName: b\n").encode(), "duplicate key"),
    "tabs": ((HEAD + "\tdisplayName: a\n").encode(), ""),
    "empty-mapping-keys": ((HEAD + "  ? \n  : 1\n").encode(), ""),
    "merge-of-scalar": ((HEAD + "  <<: 5\n").encode(), ""),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_document_is_refused_quickly_with_a_position(tree, fuzz_db, name):
    content, expected = HOSTILE[name]
    with Edited(tree, "plans/zz-hostile.yaml", content):
        validated, planned, errors = run_case(tree, fuzz_db)
    assert validated == 1 and planned == 1, name
    assert any("zz-hostile.yaml:" in e for e in errors), errors[:5]
    if expected:
        assert any(expected in e for e in errors), errors[:5]


def test_billion_laughs_is_refused_without_expanding(tree):
    """The bound separates refusing from expanding: expanded, the document is 9**10 (3.5 billion)
    strings, tens of GiB; refused, the process does not grow by even 64 MiB. (How fast the whole
    tree is validated is a benchmark's business, not this test's.)"""

    def peak_kib() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    with Edited(tree, "plans/zz-hostile.yaml", BILLION_LAUGHS.encode()):
        before = peak_kib()
        result, cpu = invoke("validate", "--config", str(tree))
        grown_mib = (peak_kib() - before) / 1024
    assert result.exit_code == 1 and "billion laughs" in result.stderr
    assert any(line.startswith(str(tree / "plans/zz-hostile.yaml") + ":") and "billion laughs" in line
               for line in result.stderr.splitlines()), result.stderr[-2000:]
    assert grown_mib < 64, f"validate grew the process by {grown_mib:.0f} MiB: the aliases were expanded"
    check_common(result, cpu, "validate")


@pytest.mark.parametrize("name", ["billion-laughs"])
def test_hostile_document_through_the_real_cli_process(tree, fuzz_db, name):
    """The installed console script in a subprocess: exit 1, one line per error, stderr only."""
    url, engine = fuzz_db
    content, expected = HOSTILE[name]
    exe = Path(sys.executable).with_name("cplane")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "control_plane"]
    env = {k: v for k, v in {**os.environ, **ENV}.items() if v is not None}
    env.pop("CPLANE_ENV", None)
    with Edited(tree, "plans/zz-hostile.yaml", content):
        for args in (["validate"], ["plan", "--database-url", url], ["apply", "--auto-approve", "--database-url", url]):
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.run([*head, *args, "--config", str(tree)], capture_output=True, text=True, env=env,
                                  timeout=60)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
            assert proc.returncode == 1, (args, proc.stdout[-500:], proc.stderr[-500:])
            assert "Traceback" not in proc.stdout + proc.stderr
            assert expected in proc.stderr
            # CPU seconds of the child (a busy machine stretches its wall-clock time, not these)
            assert cpu < TIME_BOUND + 3, (args, cpu)  # + interpreter start-up
    assert row_counts(engine) == MIGRATED_EMPTY
