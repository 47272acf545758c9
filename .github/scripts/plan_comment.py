#!/usr/bin/env python3
"""The sticky `cplane plan` comment of a pull request: build its body, then create or update it.

    plan_comment.py body --plan plan.md --plan-stderr plan.err --plan-exit-code 2 \
        --validate validate.txt --validate-exit-code 0 --out comment.md
    plan_comment.py post --body comment.md --repo OWNER/NAME --pr 123     # GITHUB_TOKEN in the env

One comment per pull request: it carries the hidden MARKER, and every push edits it in place.
Standard library only (it runs before or without the project's install); no secret ever reaches it,
cplane masks every secret value as "(sensitive)".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MARKER = "<!-- cplane-plan -->"
# GitHub refuses comment bodies over 65,536 characters; keep room for the header and footer.
MAX_PLAN_CHARS = 60_000

Api = Callable[[str, str, dict | None], Any]


def build_body(
    plan_md: str,
    *,
    plan_exit_code: int,
    plan_stderr: str = "",
    validate_output: str = "",
    validate_exit_code: int = 0,
    base: str = "",
    head: str = "",
    run_url: str = "",
    now: datetime | None = None,
) -> str:
    """The comment: the marker, cplane's own Markdown plan, failures spelled out, a footer."""
    lines = [MARKER]
    if validate_exit_code != 0:
        lines += [
            "### cplane plan",
            "",
            "> [!CAUTION]",
            "> **`cplane validate` failed; nothing was planned.** Fix these errors:",
            "",
            "```text",
            _fence_safe(validate_output.strip() or "(no output)"),
            "```",
        ]
    else:
        body = plan_md.strip() or "### cplane plan\n\n(no plan output)"
        if len(body) > MAX_PLAN_CHARS:
            body = body[:MAX_PLAN_CHARS].rsplit("\n", 1)[0] + (
                "\n\n… the plan is too long for a comment; the full plan is in the job summary."
            )
        lines.append(body)
        if plan_exit_code not in (0, 2):
            # cplane prints each error as one "error: ..." line; those the plan itself shows are not repeated.
            errors = [line for line in plan_stderr.splitlines()
                      if line.startswith("error:") and line[len("error:"):].strip() not in body]
            lines += ["", "> [!CAUTION]", "> **The plan failed; this pull request cannot be applied as it is.**"]
            lines += [f"> {line}" for line in errors]
            if not errors and "[!CAUTION]" not in body:
                lines.append("> (see the job log)")
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    footer = [f"Planned {stamp}"]
    if head:
        footer.append(f"commit `{head[:12]}`")
    if base:
        footer.append(f"against a database holding the base branch's config (`{base[:12]}`)")
    if run_url:
        footer.append(f"[workflow run]({run_url})")
    lines += ["", "<sub>" + " · ".join(footer) + "</sub>", ""]
    return "\n".join(lines)


def _fence_safe(text: str) -> str:
    return text.replace("```", "`\u200b``")


def find_sticky(comments: list[dict]) -> dict | None:
    """The comment to update: the first one carrying the marker."""
    for comment in comments:
        if MARKER in (comment.get("body") or ""):
            return comment
    return None


def upsert_comment(api: Api, repo: str, pr: int, body: str) -> tuple[str, int]:
    """Update the sticky comment if there is one, else create it. Returns (action, comment id)."""
    page = 1
    while True:
        comments = api("GET", f"/repos/{repo}/issues/{pr}/comments?per_page=100&page={page}", None)
        existing = find_sticky(comments)
        if existing is not None:
            updated = api("PATCH", f"/repos/{repo}/issues/comments/{existing['id']}", {"body": body})
            return "updated", updated["id"]
        if len(comments) < 100:
            break
        page += 1
    created = api("POST", f"/repos/{repo}/issues/{pr}/comments", {"body": body})
    return "created", created["id"]


def github_api(token: str, base_url: str = "https://api.github.com") -> Api:
    def call(method: str, path: str, data: dict | None) -> Any:
        request = urllib.request.Request(
            base_url.rstrip("/") + path,
            method=method,
            data=None if data is None else json.dumps(data).encode(),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    return call


def _read(path: str | None) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace") if path and Path(path).exists() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("body", help="build the comment body")
    b.add_argument("--plan", required=True)
    b.add_argument("--plan-stderr")
    b.add_argument("--plan-exit-code", type=int, required=True)
    b.add_argument("--validate")
    b.add_argument("--validate-exit-code", type=int, default=0)
    b.add_argument("--base", default="")
    b.add_argument("--head", default="")
    b.add_argument("--run-url", default="")
    b.add_argument("--out", required=True)
    p = sub.add_parser("post", help="create or update the sticky comment")
    p.add_argument("--body", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--pr", type=int, required=True)
    args = parser.parse_args(argv)

    if args.command == "body":
        body = build_body(
            _read(args.plan),
            plan_exit_code=args.plan_exit_code,
            plan_stderr=_read(args.plan_stderr),
            validate_output=_read(args.validate),
            validate_exit_code=args.validate_exit_code,
            base=args.base,
            head=args.head,
            run_url=args.run_url,
        )
        Path(args.out).write_text(body, encoding="utf-8")
        return 0

    token = os.environ.get("GITHUB_TOKEN")
    if not token:
        print("error: GITHUB_TOKEN is not set", file=sys.stderr)
        return 1
    api = github_api(token, os.environ.get("GITHUB_API_URL", "https://api.github.com"))
    try:
        action, comment_id = upsert_comment(api, args.repo, args.pr, _read(args.body))
    except urllib.error.HTTPError as exc:
        if exc.code == 403:
            # Pull requests from forks get a read-only token: the plan stays in the job summary.
            print("::warning::cannot comment on this pull request (HTTP 403, read-only token); "
                  "the plan is in the job summary", file=sys.stderr)
            return 0
        print(f"error: GitHub API answered HTTP {exc.code} {exc.reason}", file=sys.stderr)
        return 1
    print(f"{action} comment {comment_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
