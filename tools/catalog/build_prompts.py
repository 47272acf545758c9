"""Write config/prompts/<operation>.yaml: the operation's base prompt, then its variants.

Run from the repository root: `python3 tools/catalog/build_prompts.py`. The base prompt of each
operation is kept as it is in its file (first document); variants come from prompt_data.py.
Not part of the package; review the diff it produces and run `cplane validate`.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from prompt_data import CORE, VARIANTS  # noqa: E402

ROOT = Path("config/prompts")
PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


def variables(text: str) -> list[str]:
    seen: list[str] = []
    for name in PLACEHOLDER.findall(text):
        if name not in seen:
            seen.append(name)
    return seen


def scalar(value: str) -> str:
    try:
        plain = yaml.safe_load(f"k: {value}") == {"k": value} and ": " not in value and " #" not in value
    except yaml.YAMLError:
        plain = False
    return value if plain else json.dumps(value, ensure_ascii=False)


VERBS = {"add", "assume", "cite", "claim", "compare", "copy", "declare", "diagnose", "fill", "go", "guess", "include",
         "invent", "leave", "make", "mention", "merge", "name", "omit", "open", "pad", "paste", "plan", "present",
         "promise", "put", "quote", "rank", "recommend", "rely", "repeat", "round", "state", "tell", "turn", "use",
         "write"}
GERUNDS = {"adding": "add", "announcing": "announce", "changing": "change", "copying": "copy", "declaring": "declare",
           "dropping": "drop", "inventing": "invent", "listing": "list", "making": "make", "mentioning": "mention",
           "merging": "merge", "naming": "name", "presenting": "present", "promising": "promise",
           "removing": "remove", "repeating": "repeat", "rounding": "round", "softening": "soften"}


def do_not(item: str) -> str:
    """Every "do not" line starts with a verb: 'adding x' -> 'add x', 'emoji' -> 'include emoji'."""
    first, _, rest = item.partition(" ")
    word = first.rstrip(",")
    if word in VERBS:
        return item
    if word in GERUNDS:
        return " ".join(filter(None, [GERUNDS[word] + first[len(word):], rest]))
    return "include " + item


def text_of(v: dict) -> str:
    if "raw" in v:
        return v["raw"].rstrip() + "\n"
    inputs = CORE[v["type"]] + ("\n" + v["inputs"] if v.get("inputs") else "")
    parts = [v["goal"], "Inputs:\n" + inputs,
             "Requirements:\n" + "\n".join(f"- {r}" for r in v["rules"]),
             "Output format:\n" + v["output"],
             "Do not:\n" + "\n".join(f"- {do_not(a)}" for a in v["avoid"])]
    return "\n\n".join(parts).rstrip() + "\n"


def document(v: dict) -> str:
    text = text_of(v)
    lines = ["apiVersion: cplane/v1", "kind: Prompt", "metadata:", f"  name: {v['name']}", "spec:",
             f"  displayName: {scalar(v['display'])}", f"  description: {scalar(v['description'])}",
             f"  promptType: {v['type']}"]
    if v.get("ct"):
        lines.append(f"  contentType: {v['ct']}")
    if v.get("ind"):
        lines.append(f"  industry: {v['ind']}")
    lines.append(f"  variables: [{', '.join(variables(text))}]")
    lines.append("  text: |")
    lines += [("    " + line).rstrip() for line in text.rstrip("\n").split("\n")]
    return "\n".join(lines) + "\n"


def base_document(path: Path) -> str:
    """The first document of the file, with promptType stated."""
    text = path.read_text()
    body = text.split("\n---\n")[0]
    body = "\n".join(line for line in body.splitlines() if not line.startswith("# yaml-language-server"))
    name = yaml.safe_load(body)["metadata"]["name"]
    if "\n  promptType:" not in body:
        body = re.sub(r"(\n  description: [^\n]*)", rf"\1\n  promptType: {name}", body, count=1)
    return body.strip("\n") + "\n"


def main() -> None:
    by_type: dict[str, list[dict]] = defaultdict(list)
    for v in VARIANTS:
        by_type[v["type"]].append(v)
    for path in sorted(ROOT.glob("*.yaml")):
        docs = [base_document(path)] + [document(v) for v in by_type.pop(path.stem, [])]
        header = ("# yaml-language-server: $schema=../../schemas/Prompt.json\n"
                  f"# {path.stem}: the base prompt (no selectors) first, then its content-type and industry variants.\n")
        path.write_text(header + "---\n".join(docs))
    assert not by_type, f"variants of unknown operations: {sorted(by_type)}"


if __name__ == "__main__":
    main()
