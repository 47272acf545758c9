"""The status page's HTML: server-rendered, self-contained (inline CSS, no scripts, no external
assets), plain semantic markup that works with the keyboard and a screen reader. Plans are shown
with the CLI's own renderer (control_plane.render)."""

from __future__ import annotations

from dataclasses import replace
from html import escape

from control_plane.watch.loop import Policy, RoundResult

STYLE = """
:root{color-scheme:light dark;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--muted:#57606a;--line:#d0d7de}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:72rem;padding:0 1rem 3rem}
header{display:flex;flex-wrap:wrap;gap:.5rem 2rem;align-items:baseline;border-bottom:1px solid var(--line);padding:.8rem 0}
h1{font-size:1.3rem;margin:0}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}dt{color:var(--muted)}dd{margin:0}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
pre{background:rgba(127,127,127,.08);padding:.7rem;overflow-x:auto;font-size:13px;border-radius:4px;white-space:pre-wrap}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-weight:600;border:1px solid currentColor}
.ok{color:var(--ok)}.drift,.bad,.blocked{color:var(--bad)}.pending,.scheduled{color:var(--warn)}
.banner{font-size:1.2rem;margin:1rem 0}.muted{color:var(--muted)}
a:focus,summary:focus{outline:3px solid #0969da;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:Canvas;padding:.3rem}
"""

STATE_CLASS = {"in sync": "ok", "drift": "drift", "pending": "pending", "scheduled": "scheduled",
               "blocked": "blocked"}


def _page(title: str, body: str, refresh: int | None = None) -> bytes:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">{meta}'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            f'<a class="skip" href="#main">Skip to content</a>{body}</body></html>').encode()


def overall(result: RoundResult | None) -> tuple[str, str]:
    """(label, css class) of the whole database's state."""
    if result is None:
        return "Starting", "pending"
    if not result.ok:
        return "Error", "bad"
    if result.held and result.window.blocked:
        return "Blocked by a window", "blocked"
    if result.drift:
        return "Drift", "drift"
    if result.plan and result.plan.changes:
        return "Pending changes", "pending"
    return "In sync", "ok"


def _plan_text(plan) -> str:
    from control_plane.render.plan import render_text

    return render_text(replace(plan, errors=[]), colour=False)


def _anchor(change) -> str:
    return f"change-{change.kind}-{change.name}".replace("/", "-")


def status_page(*, result: RoundResult | None, policy: Policy, interval: float, environment: str | None,
                database: str, runs: list[dict], git: str = "", token_query: str = "") -> bytes:
    label, css = overall(result)
    q = token_query
    plan = result.plan if result else None
    head = (f"<header><h1>cplane watch</h1><span>environment <strong>{escape(environment or '(none)')}</strong></span>"
            f"<span>database <code>{escape(database)}</code></span><span>mode <strong>{escape(policy.mode)}</strong>"
            f"</span><span class=muted>every {interval:g}s</span></header>")
    parts = [head, '<main id="main">',
             f'<p class="banner" role="status" aria-live="polite"><span class="badge {css}" id="overall">{escape(label)}</span>']
    if result is not None:
        parts.append(f' <span class="muted">last round {escape(_t(result.finished_at))}</span>')
    parts.append("</p>")
    if result is not None:
        pending = [c for c in plan.changes if result.natures.get((c.kind, c.name), c.cause) != "drift"] \
            if plan is not None else []
        applied = ("unknown: the round failed" if plan is None else
                   f"not applied: {len(pending)} change(s) pending" if pending else "applied")
        rows = [("Config revision", f"<code>{escape(result.revision or 'unknown')}</code> ({applied})")]
        if git:
            rows.append(("Config source", escape(git)))
        if result.git_error:
            rows.append(("Git", f'<span class="bad">{escape(result.git_error)}</span>'))
        if result.window.blocked:
            rows.append(("Change window", f'<span class="blocked" id="window">{escape(result.window.reason)}</span>'))
        if result.held:
            rows.append(("Waiting", f"{len(result.held)} change(s): {escape(result.hold_reason)}"))
        if result.applied_run_id:
            rows.append(("Last round applied", f'<a href="/runs/{result.applied_run_id}{q}">run #{result.applied_run_id}</a>'))
        if not result.ok:
            rows.append(("Error", f'<span class="bad" id="error">{escape(result.error_type)}: {escape(result.error)}</span>'))
        parts.append("<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>")

        states = result.kind_states(policy)
        parts.append('<h2 id="kinds">Sync state per kind</h2><table aria-describedby="kinds"><thead><tr>'
                     '<th scope="col">Kind</th><th scope="col">Managed rows</th><th scope="col">State</th>'
                     '<th scope="col">Changes</th></tr></thead><tbody>')
        for kind, state in states.items():
            changes = [c for c in plan.changes if c.kind == kind] if plan else []
            links = ", ".join(f'<a href="#{_anchor(c)}">{escape(c.name)}</a>' for c in changes[:10])
            more = f" and {len(changes) - 10} more" if len(changes) > 10 else ""
            parts.append(f'<tr data-kind="{escape(kind)}"><th scope="row">{escape(kind)}</th>'
                         f"<td>{result.managed.get(kind, 0)}</td>"
                         f'<td><span class="badge {STATE_CLASS[state]}">{escape(state)}</span></td><td>{links}{more}</td></tr>')
        parts.append("</tbody></table>")

        parts.append('<h2 id="plan">Current plan</h2>')
        if plan is None:
            parts.append("<p>No plan (the round failed).</p>")
        elif not plan.changes:
            parts.append("<p>No changes: the database holds exactly the config.</p>")
        else:
            for change in plan.changes[:200]:
                cause = result.natures.get((change.kind, change.name), change.cause)
                one = replace(plan, changes=[change], warnings=[], unmanaged=[])
                parts.append(f'<section id="{_anchor(change)}" class="change" data-cause="{escape(cause)}">'
                             f'<h3>{escape(change.kind)}/{escape(change.name)} <span class="badge '
                             f'{STATE_CLASS.get(cause.split("+")[0], "pending")}">{escape(str(change.action))} ({escape(cause)})</span></h3>'
                             f"<pre>{escape(_plan_text(one))}</pre></section>")
            if len(plan.changes) > 200:
                parts.append(f"<p>... and {len(plan.changes) - 200} more (see <code>cplane plan</code>).</p>")

        parts.append('<h2 id="scheduled">Scheduled changes</h2>')
        if result.scheduled:
            parts.append("<ul>" + "".join(f"<li>{escape(_t(s.at))}: {escape(s.kind)}/{escape(s.name)} ({escape(s.action)})</li>"
                                          for s in result.scheduled[:50]) + "</ul>")
        else:
            parts.append("<p>None.</p>")

        parts.append('<h2 id="health">Database</h2><dl>'
                     f"<dt>Reachable</dt><dd>{'yes' if result.ok or result.error_type != 'database' else 'no'}</dd>"
                     f"<dt>Schema revision</dt><dd><code>{escape(str(result.schema_revision or '(none)'))}</code></dd>"
                     f"<dt>Pending migrations</dt><dd>{plan.pending_migrations if plan else '?'}</dd></dl>")
    parts.append('<h2 id="history">History</h2>')
    if runs:
        parts.append('<table><thead><tr><th scope="col">Run</th><th scope="col">Time</th><th scope="col">Actor</th>'
                     '<th scope="col">Config</th><th scope="col">Kind</th><th scope="col">Summary</th></tr></thead><tbody>')
        for r in runs:
            s = r["summary"]
            parts.append(f'<tr><td><a href="/runs/{r["id"]}{q}">#{r["id"]}</a></td><td>{escape(r["started_at"])}</td>'
                         f'<td>{escape(r["actor"])}</td><td><code>{escape(r["config_revision"] or "unknown")}</code></td>'
                         f'<td>{escape(r["kind"])}</td><td>+{s.get("create", 0)} ~{s.get("update", 0)} '
                         f'-{s.get("delete", 0)} !{s.get("retire", 0)}</td></tr>')
        parts.append("</tbody></table>")
    else:
        parts.append("<p>No applies yet.</p>")
    parts.append("</main>")
    return _page(f"cplane watch: {label}", "".join(parts), refresh=max(1, round(interval)))


def run_page(run: dict | None, token_query: str = "") -> bytes:
    from control_plane.watch.history import stored_plan

    back = f'<p><a href="/{token_query}">Back to the status page</a></p>'
    if run is None:
        return _page("cplane watch: no such run", f'<main id="main">{back}<p>No such apply run.</p></main>')
    try:
        text = _plan_text(stored_plan(run["plan"])) if run["plan"].get("changes") is not None else "(no stored plan)"
    except (ValueError, KeyError, TypeError) as exc:
        text = f"(its stored plan cannot be read: {exc})"
    body = (f'<main id="main">{back}<h1>Apply run #{run["id"]}</h1><dl><dt>Time</dt><dd>{escape(run["started_at"])}</dd>'
            f'<dt>Actor</dt><dd>{escape(run["actor"])}</dd><dt>Environment</dt><dd>{escape(run["environment"] or "-")}</dd>'
            f'<dt>Config revision</dt><dd><code>{escape(run["config_revision"] or "unknown")}</code></dd>'
            f'<dt>Kind</dt><dd>{escape(run["kind"])}</dd></dl><h2>Plan</h2><pre id="run-plan">{escape(text)}</pre></main>')
    return _page(f"cplane watch: run #{run['id']}", body)


def _t(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""
