"""Config loader: fast path (yaml-rs), exact error positions and node positions (ruamel)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.config import loader
from control_plane.config.loader import (
    Document,
    LoadError,
    LoadResult,
    dump_documents,
    load_file,
    load_overlay,
    load_tree,
    locate,
)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def only_error(result: LoadResult) -> LoadError:
    assert result.documents == []
    assert len(result.errors) == 1, result.errors
    err = result.errors[0]
    assert "\n" not in err.message
    return err


# --- documents ---------------------------------------------------------------------------------


def test_multi_document_file(tmp_path):
    path = write(
        tmp_path,
        "plans.yaml",
        "# header comment\n"
        "apiVersion: cplane/v1\nkind: Plan\nmetadata:\n  name: free\n"
        "---\n"
        "apiVersion: cplane/v1\nkind: Plan\nmetadata:\n  name: pro\n"
        "---\n",  # trailing separator: empty document, skipped
    )
    result = load_file(path)
    assert result.errors == []
    assert [(d.index, d.line, d.data["metadata"]["name"]) for d in result.documents] == [
        (0, 2, "free"),
        (1, 6, "pro"),
    ]
    assert all(d.file == path for d in result.documents)


def test_single_document_that_is_a_list_is_not_split(tmp_path):
    one = load_file(write(tmp_path, "a.yaml", "- 1\n- 2\n"))
    assert [d.data for d in one.documents] == [[1, 2]]
    explicit = load_file(write(tmp_path, "b.yaml", "---\n- [1]\n- [2]\n"))
    assert [d.data for d in explicit.documents] == [[[1], [2]]]
    two = load_file(write(tmp_path, "c.yaml", "---\n- 1\n---\n- 2\n"))
    assert [(d.index, d.line, d.data) for d in two.documents] == [(0, 1, [1]), (1, 3, [2])]


def test_document_indices_count_empty_documents(tmp_path):
    path = write(tmp_path, "a.yaml", "---\n---\n# nothing\n---\na: 1\n...\nb: 2\n")
    result = load_file(path)
    assert [(d.index, d.line, d.data) for d in result.documents] == [(2, 4, {"a": 1}), (3, 7, {"b": 2})]


def test_anchors_and_aliases_are_resolved(tmp_path):
    path = write(
        tmp_path,
        "a.yaml",
        "defaults: &defaults {tier: gold, limits: [1, 2]}\n"
        "one: *defaults\n"
        "two:\n  <<: *defaults\n  tier: silver\n",
    )
    result = load_file(path)
    assert result.errors == []
    data = result.documents[0].data
    assert data["one"] == {"tier": "gold", "limits": [1, 2]}
    assert data["two"] == {"tier": "silver", "limits": [1, 2]}  # merge key: own keys win


def test_empty_and_comment_only_files(tmp_path):
    assert load_file(write(tmp_path, "empty.yaml", "")) == LoadResult([], [])
    assert load_file(write(tmp_path, "comments.yaml", "# just a comment\n\n# another\n")) == LoadResult(
        [], []
    )
    assert load_file(write(tmp_path, "sep.yaml", "---\n...\n")) == LoadResult([], [])


def test_non_mapping_documents_are_returned(tmp_path):
    result = load_file(write(tmp_path, "a.yaml", "just a string\n---\n- a\n- b\n---\n42\n"))
    assert result.errors == []
    assert [d.data for d in result.documents] == ["just a string", ["a", "b"], 42]


def test_bom_is_dropped(tmp_path):
    result = load_file(write(tmp_path, "a.yaml", "\ufeffkind: Plan\n".encode()))
    assert [d.data for d in result.documents] == [{"kind": "Plan"}]


def test_yaml_12_scalars_on_fast_path(tmp_path):
    path = write(
        tmp_path, "a.yaml", "a: yes\nb: on\nc: no\nd: off\ne: true\nf: 2024-01-01\ng: 017\nh: 0o17\n"
    )
    data = load_file(path).documents[0].data
    assert data == {
        "a": "yes",
        "b": "on",
        "c": "no",
        "d": "off",
        "e": True,
        "f": "2024-01-01",
        "g": 17,
        "h": 15,
    }


def test_yaml_12_scalars_on_ruamel_path(tmp_path):
    yaml = loader._ruamel()
    data = yaml.load("a: yes\nb: on\nc: no\nd: off\ne: true\n")
    assert dict(data) == {"a": "yes", "b": "on", "c": "no", "d": "off", "e": True}
    # and the error path, driven by ruamel, sees the same file the same way (no error but the dup)
    err = only_error(load_file(write(tmp_path, "a.yaml", "a: yes\nb: on\na: no\n")))
    assert (err.line, err.col) == (3, 1)


def test_other_yaml_versions_are_refused(tmp_path):
    err = only_error(load_file(write(tmp_path, "a.yaml", "%YAML 1.1\n---\na: yes\n")))
    assert (err.line, err.col) == (1, 1)
    assert "1.1" in err.message
    ok = load_file(write(tmp_path, "b.yaml", "%YAML 1.2\n---\na: yes\n"))
    assert [(d.line, d.data) for d in ok.documents] == [(2, {"a": "yes"})]


# --- errors ------------------------------------------------------------------------------------


def test_duplicate_key_position(tmp_path):
    path = write(
        tmp_path,
        "a.yaml",
        "kind: Plan\n---\nkind: Plan\nmetadata:\n  name: pro\n  labels: {}\n  name: other\n",
    )
    err = only_error(load_file(path))
    assert (err.file, err.line, err.col) == (path, 7, 3)
    assert err.message == 'duplicate key "name" (first defined at line 5)'


def test_all_duplicate_keys_are_reported(tmp_path):
    result = load_file(write(tmp_path, "a.yaml", "a: 1\nb:\n  c: 1\n  c: 2\na: 3\n"))
    assert [(e.line, e.col) for e in result.errors] == [(4, 3), (5, 1)]


def test_duplicate_keys_with_same_value_but_different_spelling(tmp_path):
    err = only_error(load_file(write(tmp_path, "a.yaml", "1: a\n0x1: b\n")))
    assert (err.line, err.col) == (2, 1)


def test_syntax_error_position(tmp_path):
    err = only_error(load_file(write(tmp_path, "a.yaml", "a: 1\nb: [1, 2\nc: 3\n")))
    assert (err.line, err.col) == (3, 2)
    assert err.message.startswith("YAML syntax error: ")


def test_syntax_error_in_second_document(tmp_path):
    err = only_error(load_file(write(tmp_path, "a.yaml", "a: 1\n---\nb: c: d\n")))
    assert (err.line, err.col) == (3, 5)


def test_unknown_alias(tmp_path):
    err = only_error(load_file(write(tmp_path, "a.yaml", "a: 1\nb: *nope\n")))
    assert (err.line, err.col) == (2, 4)
    assert "nope" in err.message


def test_error_position_falls_back_to_yaml_rs_message():
    err = loader._from_rs_message(
        "a: 1\nb: c: d\n",
        Path("x.yaml"),
        "YAML parse error at line 4, column 5\n  |\n4 | b: c: d\n  |     ^\nmapping values are not allowed",
    )
    assert (err.line, err.col) == (2, 5)  # the sentinel document's two lines are taken off
    assert err.message == "YAML syntax error: mapping values are not allowed"


BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join(["*" + chr(97 + i)] * 9) + "]\n" for i in range(8)
)


def test_billion_laughs_is_refused_fast(tmp_path):
    path = write(tmp_path, "bomb.yaml", BILLION_LAUGHS)
    started = time.perf_counter()
    result = load_file(path)
    elapsed = time.perf_counter() - started
    err = only_error(result)
    assert "alias" in err.message
    assert err.line > 1  # points at an alias use, not just the top of the file
    # Expanding it would take minutes and gigabytes; refusing it takes milliseconds. The bound
    # only separates the two (generously, for a loaded CI machine); the speed itself is in bench/.
    assert elapsed < 5, elapsed


def test_moderate_alias_use_is_fine(tmp_path):
    body = "d: &d {a: 1, b: [1, 2, 3]}\nitems:\n" + "".join("  - *d\n" for _ in range(2000))
    result = load_file(write(tmp_path, "a.yaml", body))
    assert result.errors == []
    assert len(result.documents[0].data["items"]) == 2000


@pytest.mark.parametrize(
    "content, position",
    [
        (b"\x00\x01\x02garbage", (1, 1)),
        (b"a: 1\nb: \x00\n", (2, 4)),
        (b"a: 1\nb: \xff\xfe\x00\n", (2, 4)),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", (1, 1)),
        (b"a: \xc2\x80\n", (1, 4)),  # a C1 control character, valid UTF-8
    ],
)
def test_binary_garbage_is_a_clean_error(tmp_path, content, position):
    err = only_error(load_file(write(tmp_path, "bin.yaml", content)))
    assert (err.line, err.col) == position


def test_unreadable_file_is_an_error(tmp_path):
    err = only_error(load_file(tmp_path / "missing.yaml"))
    assert (err.line, err.col) == (1, 1)


# --- trees -------------------------------------------------------------------------------------


def test_load_tree_sorted_recursive_excluding_environments(tmp_path):
    write(tmp_path, "b.yaml", "n: b\n")
    write(tmp_path, "a/z.yml", "n: a/z\n---\nn: a/z2\n")
    write(tmp_path, "a/y.yaml", "n: a/y\n")
    write(tmp_path, "environments/prod.yaml", "n: prod\n")
    write(tmp_path, "notes.txt", "n: no\n")
    write(tmp_path, ".hidden/x.yaml", "n: hidden\n")
    write(tmp_path, "c.yaml", "n: [\n")
    result = load_tree(tmp_path)
    assert [d.data["n"] for d in result.documents] == ["a/y", "a/z", "a/z2", "b"]
    assert [(e.file.name, e.line) for e in result.errors] == [("c.yaml", 2)]
    overlay = load_overlay(tmp_path / "environments" / "prod.yaml")
    assert [d.data for d in overlay.documents] == [{"n": "prod"}]


def test_load_tree_missing_root(tmp_path):
    result = load_tree(tmp_path / "nope")
    assert result.documents == [] and len(result.errors) == 1


# --- locate ------------------------------------------------------------------------------------

LOCATE_FILE = """\
apiVersion: cplane/v1
kind: Plan
metadata:
  name: free
---
# the taxonomy
apiVersion: cplane/v1
kind: Industry
metadata:
  name: healthcare
spec:
  sectors:
    - name: cardiology
      seedKeywords:
        - keyword: heart
          searchVolume: 100
        - {keyword: ecg, searchVolume: 5}
    - name: oncology
      tags: [a, b]
"""


def test_locate_nested_keys_and_list_items_in_second_document(tmp_path):
    loader.clear_locate_cache()
    doc = load_file(write(tmp_path, "a.yaml", LOCATE_FILE)).documents[1]
    assert doc.index == 1 and doc.line == 5
    assert locate(doc, ()) == (7, 1)
    assert locate(doc, ("metadata", "name")) == (10, 3)
    assert locate(doc, ("spec", "sectors")) == (12, 3)
    assert locate(doc, ("spec", "sectors", 0)) == (13, 7)
    assert locate(doc, ("spec", "sectors", 0, "seedKeywords", 0, "searchVolume")) == (16, 11)
    assert locate(doc, ("spec", "sectors", 0, "seedKeywords", 1)) == (17, 11)
    assert locate(doc, ("spec", "sectors", 0, "seedKeywords", 1, "searchVolume")) == (17, 26)
    assert locate(doc, ("spec", "sectors", 1, "tags", 1)) == (19, 17)
    assert locate(doc, ("spec", "sectors", -1, "name")) == (18, 7)


def test_locate_missing_path_returns_deepest_existing_node(tmp_path):
    doc = load_file(write(tmp_path, "a.yaml", LOCATE_FILE)).documents[1]
    assert locate(doc, ("spec", "sectors", 1, "seedKeywords")) == (18, 7)
    assert locate(doc, ("spec", "sectors", 7, "name")) == (12, 3)
    assert locate(doc, ("metadata", "name", "deeper")) == (10, 3)
    assert locate(doc, ("nope",)) == (7, 1)


def test_locate_parses_each_document_once(tmp_path, monkeypatch):
    loader.clear_locate_cache()
    calls = []
    real = loader._parse_for_positions
    monkeypatch.setattr(loader, "_parse_for_positions", lambda f: calls.append(f) or real(f))
    docs = load_file(write(tmp_path, "a.yaml", LOCATE_FILE)).documents
    for _ in range(50):
        locate(docs[0], ("metadata", "name"))
        locate(docs[1], ("spec", "sectors", 0))
    assert len(calls) == 2  # one slice per document, never the whole file again
    assert calls[1].startswith("---\n# the taxonomy\n")


def test_locate_falls_back_to_whole_file_when_a_slice_does_not_parse(tmp_path):
    path = write(
        tmp_path,
        "a.yaml",
        "%TAG !e! tag:example.com,2024:\n---\na: 1\n...\n%TAG !e! tag:example.com,2024:\n---\nb: !e!x 1\nc:\n  d: 2\n",
    )
    docs = load_file(path).documents
    assert [(d.index, d.line) for d in docs] == [(0, 2), (1, 6)]
    assert locate(docs[1], ("c", "d")) == (9, 3)


def test_locate_bare_document_after_end_marker(tmp_path):
    docs = load_file(write(tmp_path, "a.yaml", "a: 1\n...\n# c\n\nb:\n  - x\n  - y\n")).documents
    assert [(d.index, d.line) for d in docs] == [(0, 1), (1, 5)]
    assert locate(docs[1], ("b", 1)) == (7, 5)


def test_locate_with_anchors_aliases_and_merge_keys(tmp_path):
    path = write(
        tmp_path,
        "a.yaml",
        "base: &base\n  tier: gold\n  limits: [1, 2]\nalias: *base\nmerged:\n  <<: *base\n  extra: 1\n",
    )
    doc = load_file(path).documents[0]
    assert locate(doc, ("alias",)) == (4, 1)
    assert locate(doc, ("merged", "extra")) == (7, 3)
    assert locate(doc, ("merged", "tier")) == (2, 3)  # defined in the anchored mapping
    assert locate(doc, ("alias", "limits", 1)) == (3, 15)


def test_locate_when_file_vanished(tmp_path):
    doc = Document(file=tmp_path / "gone.yaml", index=0, data={}, line=3)
    assert locate(doc, ("a",)) == (3, 1)


# --- dump --------------------------------------------------------------------------------------


def test_dump_round_trip(tmp_path):
    shared = {"x": 1}
    docs = [
        {
            "apiVersion": "cplane/v1",
            "kind": "Prompt",
            "metadata": {"name": "intro", "labels": {}},
            "spec": {
                "template": "Hello {name},\n\nwelcome.\n",
                "noFinalNewline": "a\nb",
                "trailingSpaces": "a  \nb",
                "flags": ["yes", "no", "on", True, None, 1.5, "2024-01-01", "017"],
                "one": shared,
                "two": shared,
            },
        },
        {"zeta": 1, "alpha": 2},
    ]
    text = dump_documents(docs, header="Generated by cplane export\ndo not edit")
    assert text.startswith("# Generated by cplane export\n# do not edit\n---\napiVersion: cplane/v1\n")
    assert text.count("\n---\n") == 2
    assert "template: |" in text
    assert "&" not in text and "*" not in text
    assert text.index("zeta") < text.index("alpha")
    result = load_file(write(tmp_path, "out.yaml", text))
    assert result.errors == []
    assert [d.data for d in result.documents] == docs


def test_dump_without_header():
    assert dump_documents([{"a": 1}], None) == "---\na: 1\n"


# --- robustness --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(tmp_path, content):
    result = load_file(write(tmp_path, "fuzz.yaml", content))
    assert isinstance(result, LoadResult)
    for err in result.errors:
        assert err.line >= 1 and err.col >= 1 and "\n" not in err.message


YAMLISH = st.lists(
    st.sampled_from(list("ab:-[]{}&*!|>'\"#%?,. \n\t\x00") + ["---\n", "...\n", "  ", "<<", "&x ", "*x"]),
    max_size=60,
).map("".join)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(YAMLISH, st.text(max_size=200)))
def test_random_text_never_raises(tmp_path, content):
    result = load_file(write(tmp_path, "fuzz.yaml", content))
    for err in result.errors:
        assert err.line >= 1 and err.col >= 1 and "\n" not in err.message
    for doc in result.documents:
        assert doc.line >= 1
        assert len(locate(doc, ("a", 0))) == 2
    loader.clear_locate_cache()
