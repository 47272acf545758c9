"""The per-file cache (control_plane/config/cache.py): with it, validation gives exactly what it
gives without it (issues with their positions, warnings, rows and their order), whatever was edited
since the cache was written, and a damaged, foreign or unwritable cache changes nothing."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.config import cache as file_cache
from control_plane.config.loader import clear_locate_cache
from control_plane.config.model import CachedObject
from control_plane.reconcile.validation import load_checked, validate_all

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"
INTENTS = ("informational", "commercial", "transactional", "navigational")


def industry(name: str, display: str, keywords: list[str], bad: bool = False) -> str:
    lines = ["apiVersion: cplane/v1", "kind: Industry", "metadata:", f"  name: {name}", "spec:",
             f"  displayName: {display}", "  sectors:", "    - name: main", "      displayName: Main",
             "      seedKeywords:" if keywords else "      seedKeywords: []"]
    for i, keyword in enumerate(keywords):
        intent = "bogus" if bad and i == len(keywords) - 1 else INTENTS[i % 4]
        lines += [f"        - keyword: {keyword}", f"          intent: {intent}"]
    return "\n".join(lines) + "\n"


def outcome(config_dir: Path, environment: str | None, monkeypatch, cached: bool):
    """Everything validation hands on: issues (with positions), warnings, rows in their order."""
    clear_locate_cache()
    if cached:
        monkeypatch.delenv(file_cache.ENV_DISABLE, raising=False)
    else:
        monkeypatch.setenv(file_cache.ENV_DISABLE, "1")
    config, rows = load_checked(config_dir, environment)
    ordered = None if rows is None else {kind: list(by_key.items()) for kind, by_key in rows.items()}
    names = {kind: list(objects) for kind, objects in config.objects.items()}
    everything = validate_all(config_dir, environment)
    return (config.issues, config.warnings, ordered, names, config.files,
            everything.issues, everything.warnings)


def assert_same(config_dir: Path, monkeypatch) -> None:
    for environment in (None, "staging"):
        with_cache = outcome(config_dir, environment, monkeypatch, cached=True)
        without = outcome(config_dir, environment, monkeypatch, cached=False)
        assert with_cache == without, environment


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(REPO_CONFIG, tmp_path / "config")
    return tmp_path / "config"


OPS = st.one_of(
    st.tuples(st.just("value"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("add-keyword"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("remove-keyword"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("rename"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("error"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("fix"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("duplicate-keyword"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("overlay"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("add-file"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("remove-file"), st.integers(0, 3), st.integers(0, 99)),
    st.tuples(st.just("repo-file"), st.integers(0, 3), st.integers(0, 99)),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(OPS, min_size=1, max_size=5))
def test_cache_equals_full_path_over_random_edits(tree: Path, monkeypatch, steps):
    """At every step of a random sequence of edits, the cached result equals the uncached one."""
    root = tree.parent
    shutil.rmtree(root / ".cplane", ignore_errors=True)
    shutil.rmtree(tree)
    shutil.copytree(REPO_CONFIG, tree)  # every example starts from the repo's tree and no cache
    overlay = tree / "environments" / "staging.yaml"
    overlay_text = overlay.read_text()
    model = {i: {"name": f"gen-{i}", "display": f"Gen {i}", "keywords": [f"kw {i} {k}" for k in range(3)],
                 "bad": False} for i in range(3)}
    patched: set[int] = set()
    repo_file = tree / "industries" / "automotive.yaml"
    repo_text = repo_file.read_text()

    def write() -> None:
        for old in (tree / "industries").glob("gen-*.yaml"):
            old.unlink()
        for i, m in model.items():
            (tree / "industries" / f"gen-{i}.yaml").write_text(industry(m["name"], m["display"], m["keywords"], m["bad"]))
        extra = "".join(f"    - kind: Industry\n      name: {model[i]['name'] if i in model else f'gen-{i}'}\n"
                        f"      patch:\n        displayName: Patched {i}\n" for i in sorted(patched))
        overlay.write_text(overlay_text + extra)

    write()
    assert_same(tree, monkeypatch)
    for op, i, n in steps:
        m = model.get(i)
        if op == "add-file":
            model.setdefault(i, {"name": f"gen-{i}", "display": f"New {n}", "keywords": [f"new {n}"], "bad": False})
        elif op == "remove-file":
            model.pop(i, None)
        elif op == "overlay":
            patched ^= {i}
        elif op == "repo-file":
            repo_file.write_text(repo_text.replace("displayName: Automotive", f"displayName: Automotive {n}")
                                 if n % 2 else repo_text)
        elif m is None:
            continue
        elif op == "value":
            m["display"] = f"Gen {i} v{n}"
        elif op == "add-keyword":
            m["keywords"].append(f"kw {i} extra {n}")
        elif op == "remove-keyword" and m["keywords"]:
            m["keywords"].pop(n % len(m["keywords"]))
        elif op == "rename":
            m["name"] = f"gen-{i}-r{n}"
        elif op == "error":
            m["bad"] = bool(m["keywords"])
        elif op == "fix":
            m["bad"] = False
        elif op == "duplicate-keyword" and m["keywords"]:
            m["keywords"].append(m["keywords"][0])
        write()
        assert_same(tree, monkeypatch)


def test_warm_cache_parses_nothing_and_one_changed_file_is_parsed_alone(tree: Path, monkeypatch):
    monkeypatch.delenv(file_cache.ENV_DISABLE, raising=False)
    first, rows = load_checked(tree)
    assert first.ok and rows
    assert first._loaded.writes > 0 and first._loaded.hits == 0
    again, rows_again = load_checked(tree)
    assert again._loaded.misses == 0 and again._loaded.hits == first._loaded.writes
    assert rows_again == rows
    industries = again.of_kind("Industry")
    assert all(isinstance(o, CachedObject) for o in industries.values())
    assert all(o._spec is None for o in industries.values())  # no stage asked for their specs
    # A stage that does ask gets the spec the file validates to.
    assert industries["automotive"].spec.display_name == "Automotive"
    path = tree / "industries" / "automotive.yaml"
    path.write_text(path.read_text().replace("displayName: Automotive", "displayName: Cars"))
    changed, changed_rows = load_checked(tree)
    assert changed._loaded.misses == 1
    assert changed_rows["Industry"]["automotive"].values["name"] == "Cars"


def test_object_patched_by_the_overlay_is_never_taken_from_the_cache(tree: Path, monkeypatch):
    monkeypatch.delenv(file_cache.ENV_DISABLE, raising=False)
    load_checked(tree)  # base: every clean file cached
    config, rows = load_checked(tree, "production")
    patched = config.of_kind("PaymentMethod")["paypal"]
    assert not isinstance(patched, CachedObject)
    assert rows["PaymentMethod"]["paypal"].values["settings"]["mode"] == "live"


def _damage_every_entry(cache_dir: Path, content: bytes) -> int:
    entries = list(cache_dir.glob("*.pickle"))
    for entry in entries:
        entry.write_bytes(content)
    return len(entries)


@pytest.mark.parametrize("damage", [
    b"",  # empty
    b"not a pickle at all",
    pickle.dumps(("other", "shape")),
    pickle.dumps((file_cache.FORMAT, b"another salt", b"digest", [])),
])
def test_damaged_cache_is_ignored(tree: Path, monkeypatch, damage: bytes):
    expected = outcome(tree, None, monkeypatch, cached=False)
    outcome(tree, None, monkeypatch, cached=True)  # fills the cache
    assert _damage_every_entry(tree.parent / file_cache.CACHE_DIR, damage) > 0
    assert outcome(tree, None, monkeypatch, cached=True) == expected


def test_truncated_entries_are_ignored(tree: Path, monkeypatch):
    expected = outcome(tree, None, monkeypatch, cached=False)
    outcome(tree, None, monkeypatch, cached=True)
    for entry in (tree.parent / file_cache.CACHE_DIR).glob("*.pickle"):
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    assert outcome(tree, None, monkeypatch, cached=True) == expected


def test_entry_with_wrong_rows_of_another_file_is_not_used(tree: Path, monkeypatch):
    """An entry is bound to the content it was made from: swapping entries between files is a miss."""
    monkeypatch.delenv(file_cache.ENV_DISABLE, raising=False)
    load_checked(tree)
    entries = sorted((tree.parent / file_cache.CACHE_DIR).glob("*.pickle"))
    a, b = entries[0].read_bytes(), entries[1].read_bytes()
    entries[0].write_bytes(b)
    entries[1].write_bytes(a)
    assert outcome(tree, None, monkeypatch, cached=True) == outcome(tree, None, monkeypatch, cached=False)


def test_other_version_is_a_miss(tree: Path, monkeypatch):
    monkeypatch.delenv(file_cache.ENV_DISABLE, raising=False)
    load_checked(tree)
    monkeypatch.setattr(file_cache, "salt", lambda: b"a newer cplane")
    config, _ = load_checked(tree)
    assert config._loaded.hits == 0


def test_unwritable_cache_is_not_an_error(tree: Path, monkeypatch):
    (tree.parent / ".cplane").mkdir()
    (tree.parent / file_cache.CACHE_DIR).write_text("a file where the cache directory would be")
    expected = outcome(tree, None, monkeypatch, cached=False)
    assert outcome(tree, None, monkeypatch, cached=True) == expected
    config, _ = load_checked(tree)
    assert config._loaded.writes == 0


def test_disabled_cache_writes_nothing(tree: Path, monkeypatch):
    monkeypatch.setenv(file_cache.ENV_DISABLE, "1")
    load_checked(tree)
    assert not (tree.parent / ".cplane").exists()


def test_file_edited_after_it_was_read_is_an_error_not_a_mix(tree: Path, monkeypatch):
    from control_plane.errors import CplaneError

    monkeypatch.delenv(file_cache.ENV_DISABLE, raising=False)
    load_checked(tree)
    config, _ = load_checked(tree)
    obj = config.of_kind("Industry")["automotive"]
    path = tree / "industries" / "automotive.yaml"
    path.write_text(path.read_text().replace("displayName: Automotive", "displayName: Cars"))
    with pytest.raises(CplaneError, match="changed while cplane was reading it"):
        obj.spec  # noqa: B018


def test_unused_entries_are_pruned_and_used_ones_kept(tree: Path, monkeypatch):
    import os
    import time

    monkeypatch.delenv(file_cache.ENV_DISABLE, raising=False)
    load_checked(tree)
    cache_dir = tree.parent / file_cache.CACHE_DIR
    old = time.time() - file_cache.MAX_AGE_SECONDS - 3600
    stale = cache_dir / ("0" * 64 + ".pickle")
    stale.write_bytes(b"an entry of a content no file has any more")
    for entry in cache_dir.glob("*.pickle"):
        os.utime(entry, (old, old))
    path = tree / "industries" / "automotive.yaml"
    path.write_text(path.read_text().replace("displayName: Automotive", "displayName: Cars"))
    config, _ = load_checked(tree)  # one new entry written: the old unused ones go
    assert config._loaded.writes == 1
    assert not stale.exists()
    kept = list(cache_dir.glob("*.pickle"))
    assert len(kept) == config._loaded.hits + 1  # every entry this run used is still there
    again, _ = load_checked(tree)
    assert again._loaded.misses == 0
