"""Rewrite config/industries/ from the current files plus tools/catalog/taxonomy_data.py.

Run from the repository root: `python3 tools/catalog/build_taxonomy.py`. It keeps every existing
industry, sector and keyword (by name), drops seed keyword metrics that have no source note
(annotation `cplane/metrics-source` on the industry), adds the keywords and sectors of the data
module and writes one file per industry. Not part of the package; review the diff it produces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from taxonomy_data import ADD, NEW_INDUSTRIES, NEW_SECTORS  # noqa: E402

ROOT = Path("config/industries")
INTENTS = {"i": "informational", "c": "commercial", "t": "transactional", "n": "navigational"}
METRICS = ("searchVolume", "difficulty", "cpc")
SOURCE = "cplane/metrics-source"


def scalar(value: str, flow: bool = False) -> str:
    try:
        plain = yaml.safe_load(f"k: {value}") == {"k": value} and (not flow or yaml.safe_load(f"[{value}]") == [value])
    except yaml.YAMLError:
        plain = False
    return value if plain and ": " not in value and " #" not in value else json.dumps(value)


def keyword(entry: str) -> dict:
    phrase, code = entry.rsplit("|", 1)
    return {"keyword": phrase, "intent": INTENTS[code]}


def write(name: str, doc: dict, title: str) -> None:
    spec, meta = doc["spec"], doc["metadata"]
    sourced = SOURCE in (meta.get("annotations") or {})
    out = [
        "# yaml-language-server: $schema=../../schemas/Industry.json",
        f"# {title}: sectors and their seed keywords (nested names: {name}/<sector>).",
        "# Seed keywords carry the phrase and its search intent only. Search volume, difficulty and CPC",
        "# are filled in by the keyword provider; config may carry them only with a source note",
        "# (annotation cplane/metrics-source), see docs/config.md.",
        "apiVersion: cplane/v1",
        "kind: Industry",
        "metadata:",
        f"  name: {name}",
    ]
    if meta.get("annotations"):
        out.append("  annotations:")
        out += [f"    {k}: {scalar(v)}" for k, v in meta["annotations"].items()]
    out += ["spec:", f"  displayName: {scalar(spec['displayName'])}", f"  description: {scalar(spec['description'])}",
            f"  sortOrder: {spec.get('sortOrder', 0)}", "  sectors:"]
    for sector in spec["sectors"]:
        out += [f"    - name: {sector['name']}", f"      displayName: {scalar(sector['displayName'])}",
                f"      description: {scalar(sector['description'])}", "      seedKeywords:"]
        for kw in sector["seedKeywords"]:
            fields = [f"keyword: {scalar(kw['keyword'], flow=True)}"]
            if sourced:
                fields += [f"{m}: {kw[m]}" for m in METRICS if kw.get(m) is not None]
            fields.append(f"intent: {kw.get('intent', 'informational')}")
            out.append("        - {" + ", ".join(fields) + "}")
    (ROOT / f"{name}.yaml").write_text("\n".join(out) + "\n")


def main() -> None:
    docs: dict[str, tuple[dict, str]] = {}
    for path in sorted(ROOT.glob("*.yaml")):
        text = path.read_text()
        title = text.splitlines()[1].lstrip("# ").split(":")[0]
        docs[path.stem] = (yaml.safe_load(text), title)
    for name, (display, description, order) in NEW_INDUSTRIES.items():
        docs.setdefault(name, ({"metadata": {"name": name},
                                "spec": {"displayName": display, "description": description,
                                         "sortOrder": order, "sectors": []}}, display))
    for name, sectors in NEW_SECTORS.items():
        existing = {s["name"] for s in docs[name][0]["spec"]["sectors"]}
        for slug, display, description, keywords in sectors:
            if slug not in existing:
                docs[name][0]["spec"]["sectors"].append(
                    {"name": slug, "displayName": display, "description": description,
                     "seedKeywords": [keyword(k) for k in keywords]})
    for path, entries in ADD.items():
        industry, slug = path.split("/")
        sector = next(s for s in docs[industry][0]["spec"]["sectors"] if s["name"] == slug)
        have = {k["keyword"] for k in sector["seedKeywords"]}
        sector["seedKeywords"] += [k for k in map(keyword, entries) if k["keyword"] not in have]
    for name, (doc, title) in docs.items():
        write(name, doc, title)


if __name__ == "__main__":
    main()
