"""export's YAML writers: every string the documents can hold reads back exactly, as cplane reads config."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.config.loader import dump_documents, load_text
from control_plane.export import emit

# The strings that trip YAML writers: quotes, colons, comment marks, leading and trailing spaces,
# words and numbers that read as other types, dates, line breaks of every kind, unicode. Never NUL:
# no database column holds one, and the loader refuses it.
TRICKY = [
    "", " ", "  lead", "trail ", "a: b", "a:b", "a #b", "#x", "- x", "-x", "? x", "[x]", "{x}", "x, y", "'x'", '"x"',
    "yes", "No", "ON", "off", "y", "n", "true", "False", "null", "Null", "~", "NaN", ".nan", ".inf", "-.inf",
    "0", "012", "0x1f", "1e3", "1_000", "+1", "-1.5", "3.", "2024-01-01", "2024-1-1 10:00", "12:30", "1:20:30",
    "a\nb", "a\n", "a\n\n", "a\n\n\n", "\na", "\n", "\n\n", " \n", "a\n ", "a \nb", "  lead\nnext", "\n  x\n",
    "a\r\nb", "a\rb", "tab\there", "\tlead", "x\n\ty", "é", "héllo wörld", "日本語", "emoji 🎉", "zero\u200bwidth",
    "nel\x85x", "ls\u2028x", "bom\ufeff", "bell\x07", "del\x7f", "back\\slash", "back\\n", "%x",
    "_0", "_1_000", "_x", "@x", "`x", "&anchor", "*alias", "!tag", "|", ">", "x |", "a\n# not a comment\n", "key: |\n  nested",
]

text = st.one_of(
    st.sampled_from(TRICKY),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40),
    st.lists(st.sampled_from(TRICKY + ["plain words", "x"]), min_size=1, max_size=4).map("\n".join),
    st.text(st.sampled_from(list(" \n\t:#-'\"ab1")), max_size=20),
)
scalar = st.one_of(text, st.integers(), st.booleans(), st.none(),
                   st.floats(allow_nan=False, allow_infinity=False))


def document(value, key="value") -> dict:
    """The fixed shape export writes, with `value` at every place a scalar goes."""
    return {
        "apiVersion": "cplane/v1",
        "kind": "Prompt",
        "metadata": {"name": "x", "annotations": {"cplane/prevent-destroy": "true"}},
        "spec": {key: value, "nested": {"inner": value}, "list": [value, {"k": value, "after": 1}], "empty": []},
    }


def read_back(content: str):
    """As `cplane validate` reads a file (the loader: yaml-rs, dates kept as strings)."""
    result = load_text(content, Path("x.yaml"))
    assert result.ok, [str(e) for e in result.errors]
    return [d.data for d in result.documents]


@settings(max_examples=400, deadline=None)
@given(value=scalar)
def test_own_writer_reads_back_exactly(value):
    doc = document(value)
    # The writer unchecked: every string without a lone surrogate must come back as written.
    assert read_back(emit.emit(doc)) == [doc]
    assert emit.dump(doc) is not None


@settings(max_examples=200, deadline=None)
@given(key=text.filter(bool), value=scalar)
def test_own_writer_keys(key, value):
    doc = document(value, key=key)
    assert read_back(emit.emit(doc)) == [doc]


@settings(max_examples=300, deadline=None)
@given(value=scalar)
def test_render_reads_back_exactly_whichever_emitter_wrote_it(value):
    doc = document(value)
    content = emit.render(doc, header="yaml-language-server: $schema=../../schemas/Prompt.json")
    assert content.startswith("# yaml-language-server: $schema=../../schemas/Prompt.json\n---\n")
    assert read_back(content) == [doc]


# What ruamel (the careful emitter) writes exactly: it writes C0/C1 control characters raw (which
# no reader accepts) and keeps NEL, LS and PS inside literal blocks (where readers take them for
# line breaks), and writes `_0` plain, which yaml-rs reads as the integer 0. render() checks its
# output too and refuses rather than write such a file.
RUAMEL_SAFE = st.characters(exclude_categories=("Cs", "Cc"), include_characters="\n\t",
                            exclude_characters="\x85\u2028\u2029")
careful_text = st.one_of(
    st.sampled_from(TRICKY),
    st.text(RUAMEL_SAFE, max_size=40),
    st.lists(st.sampled_from(TRICKY + ["plain words", "x"]), min_size=1, max_size=4).map("\n".join),
).filter(lambda s: not s.lstrip(" -+").startswith("_")).filter(lambda s: not any(c in s for c in "\x85\u2028\u2029\ufeff") and all(c in "\n\t" or ord(c) >= 32 and not
                                                                          0x7f <= ord(c) <= 0x9f for c in s))


@settings(max_examples=200, deadline=None)
@given(value=careful_text)
def test_careful_emitter_reads_back_exactly(value):
    # The fallback: the loader's dump_documents (ruamel for documents with multi-line text).
    doc = document(value)
    assert read_back(dump_documents([doc])) == [doc]


def test_render_refuses_what_no_writer_reproduces(monkeypatch):
    monkeypatch.setattr(emit, "_dump_rs", lambda doc: None)
    monkeypatch.setattr(emit, "dump", lambda doc: None)
    # ruamel keeps NEL raw in a literal block: the check catches it, nothing is returned to write.
    import pytest

    with pytest.raises(ValueError, match="no YAML writer"):
        emit.render(document("line\n0\x85 more"))
    assert read_back(emit.render(document("plain\ntext\n"))) == [document("plain\ntext\n")]


def test_plain_scalars_never_read_as_another_type():
    for value in TRICKY:
        written = emit.scalar(value)
        if written == value:  # plain: must start with a letter and be no reserved word
            assert value[:1].isascii() and value[:1].isalpha(), value
            assert value.lower() not in {"yes", "no", "on", "off", "y", "n", "true", "false", "null"}
    assert emit.scalar("2024-01-01") == '"2024-01-01"'
    assert emit.scalar("keyword 12 0 3") == "keyword 12 0 3"
    assert emit.scalar(1.0) == "1.0" and emit.scalar(3) == "3" and emit.scalar(None) == "null"


def test_multiline_text_is_a_literal_block():
    prompt = "Write about {topic}.\n\nRules:\n- be brief\n  - nested: yes\n"
    content = emit.render(document(prompt, key="text"))
    assert "  text: |\n    Write about {topic}.\n\n    Rules:\n    - be brief\n      - nested: yes\n" in content
    assert "\\n" not in content
    # Chomping and indentation indicators where the text needs them.
    assert "|-\n" in emit.emit(document("no final\nbreak"))
    assert "|+\n" in emit.emit(document("two\nbreaks\n\n"))
    assert "|2\n" in emit.emit(document("  starts with spaces\nx\n"))


def test_text_a_literal_block_cannot_hold_is_double_quoted():
    assert '"a\\r\\nb"' in emit.emit(document("a\r\nb"))
    assert '"nul\\0x"' in emit.emit(document("nul\x00x"))
    assert emit.dump(document(float("nan"))) is None  # NaN never equals itself: never a silent file


@settings(deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False) | st.decimals(places=2, min_value=0, max_value=10**10))
def test_a_cached_number_is_the_number_of_every_decimal_equal_in_value(value):
    # _fields_from_columns keeps _number's int or float results by Decimal value: whatever the
    # spelling (trailing zeros, exponent, -0), an equal Decimal gets what _number gives it.
    from control_plane.export.exporter import _fields_from_columns, _number

    plan = (("cpc", "cpc", True, None),)
    sign, digits, exponent = value.as_tuple()
    twins = [value, Decimal((sign, digits + (0, 0), exponent - 2)), Decimal((1 - sign, digits, exponent))]
    for twin in twins:
        if twin != value:
            continue  # -x is a twin of 0 only
        got, fresh = _fields_from_columns({"cpc": twin}, plan)["cpc"], _number(twin)
        assert type(got) is type(fresh) and got == fresh
        if isinstance(fresh, str):
            assert got == str(twin)  # the Decimal's own spelling, never a cached one
