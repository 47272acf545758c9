"""The watch process's HTTP server: `/` (the status page), `/runs/ID`, `/metrics`, `/healthz`.

A stdlib ThreadingHTTPServer in a daemon thread: requests read the loop's latest round (a snapshot
under a lock) and the apply history (a read-only engine of their own), so neither the loop nor the
server ever waits for the other. Read-only: there is no route that writes. Bound to loopback by
default; bound elsewhere, every route but /healthz needs CPLANE_UI_TOKEN (`Authorization: Bearer`,
or `?token=` once, which sets a cookie)."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from control_plane.errors import CplaneError
from control_plane.watch.metrics import CONTENT_TYPE

log = logging.getLogger("cplane.watch")
COOKIE = "cplane_ui_token"


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not (0 <= int(port) <= 65535):
        raise ValueError(f"{text!r} is not HOST:PORT (like 127.0.0.1:8474)")
    return host.strip("[]") or "127.0.0.1", int(port)


class StatusServer:
    def __init__(self, watcher, host: str, port: int, *, token: str | None, environment: str | None,
                 database: str, read_engine, git_label: str = ""):
        if not is_loopback(host) and not token:
            raise CplaneError(f"refusing to serve the status page on {host}: not loopback, and CPLANE_UI_TOKEN "
                              "is not set (set it, or --listen 127.0.0.1:PORT)")
        self.watcher = watcher
        self.token = token if not is_loopback(host) else None
        self.environment = environment
        self.database = database
        self.read_engine = read_engine
        self.git_label = git_label
        handler = _handler(self)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address[:2]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="cplane-watch-http", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def runs(self, limit: int = 20, run_id: int | None = None) -> list[dict]:
        from control_plane.watch.history import runs

        try:
            return runs(self.read_engine, limit=limit, run_id=run_id)
        except Exception as exc:  # the database is down: the page says so through the loop's round
            log.debug("watch: history unreadable: %s", exc)
            return []


def _handler(server: StatusServer):
    class Handler(BaseHTTPRequestHandler):
        server_version = "cplane-watch"

        def log_message(self, fmt, *args):  # quiet: the loop's lines are what an operator reads
            log.debug("watch http: " + fmt, *args)

        def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": {"code": code, "message": message}}).encode()
            self._send(status, body, "application/json")

        def _authorized(self, query: dict) -> tuple[bool, dict]:
            if server.token is None:
                return True, {}
            offered = []
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                offered.append(auth[7:].strip())
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == COOKIE:
                    offered.append(value)
            from_query = query.get("token", [""])[0]
            if from_query:
                offered.append(from_query)
            ok = any(hmac.compare_digest(o.encode(), server.token.encode()) for o in offered if o)
            cookie = {"Set-Cookie": f"{COOKIE}={quote(server.token)}; HttpOnly; SameSite=Strict; Path=/"} \
                if ok and from_query else {}
            return ok, cookie

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            parts = urlsplit(self.path)
            path, query = parts.path, parse_qs(parts.query)
            watcher = server.watcher
            if path == "/healthz":
                result = watcher.snapshot()
                healthy = result is not None and result.ok
                body = json.dumps({"status": "ok" if healthy else ("starting" if result is None else "failing"),
                                   "rounds": watcher.rounds,
                                   "error": (result.error if result is not None and not result.ok else None)}).encode()
                self._send(200 if healthy or result is None else 503, body, "application/json")
                return
            ok, cookie = self._authorized(query)
            if not ok:
                self._error(401, "unauthorized", "this status page needs CPLANE_UI_TOKEN (Authorization: Bearer, or ?token=)")
                return
            if path == "/metrics":
                self._send(200, watcher.metrics.render(), CONTENT_TYPE)
                return
            from control_plane.watch.page import run_page, status_page

            if path == "/":
                body = status_page(result=watcher.snapshot(), policy=watcher.policy, interval=watcher.interval,
                                   environment=server.environment, database=server.database, runs=server.runs(),
                                   git=server.git_label)
                self._send(200, body, "text/html; charset=utf-8", cookie)
                return
            if path.startswith("/runs/") and path[6:].isdigit():
                found = server.runs(run_id=int(path[6:]))
                self._send(200 if found else 404, run_page(found[0] if found else None), "text/html; charset=utf-8",
                           cookie)
                return
            self._error(404, "not_found", f"no route {path}")

        def do_POST(self):
            self._error(405, "method_not_allowed", "the status page is read-only")

        do_PUT = do_DELETE = do_PATCH = do_POST

    return Handler
