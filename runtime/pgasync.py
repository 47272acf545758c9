"""A small pool of psycopg async connections for hot read paths.

Sync endpoints and sync dependencies each hop to the threadpool, which on a busy machine costs more
than the query itself. A route on this pool awaits its one query on the event loop instead.

Connections are in autocommit mode (one statement, no BEGIN / ROLLBACK round trips) and belong to
the event loop that opened them: when a request arrives on another loop (a test client that opens
a loop per request), the idle connections of the old loop are closed and the pool starts over. A
connection that fails or is left mid-transaction is closed, not reused; like the engine without
pre-ping, a dead connection answers one 503 and is replaced.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy.engine import Engine

DEFAULT_SIZE = 10


class AsyncPool:
    def __init__(self, connect_kwargs: dict[str, Any], max_size: int = DEFAULT_SIZE):
        self._kwargs = connect_kwargs
        self.max_size = max(1, max_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self._idle: list[psycopg.AsyncConnection] = []

    @classmethod
    def for_engine(cls, engine: Engine) -> AsyncPool | None:
        """A pool on the engine's database, or None unless it is PostgreSQL through psycopg."""
        if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
            return None
        _args, kwargs = engine.dialect.create_connect_args(engine.url)
        kwargs = dict(kwargs)
        kwargs.setdefault("connect_timeout", 5)
        return cls(kwargs, int(os.environ.get("CPLANE_DB_ASYNC_POOL_SIZE", str(DEFAULT_SIZE))))

    def _bind(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._sem is None:
            self.close_idle()
            self._loop = loop
            self._sem = asyncio.Semaphore(self.max_size)
        return loop, self._sem

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        loop, sem = self._bind()
        async with sem:
            conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._kwargs)
            reusable = False
            try:
                yield conn
                reusable = True
            finally:
                if (reusable and loop is self._loop and not conn.closed
                        and conn.info.transaction_status == pq.TransactionStatus.IDLE):
                    self._idle.append(conn)
                else:
                    _close(conn)

    def close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)


def _close(conn: psycopg.AsyncConnection) -> None:
    # Synchronous and loop-free: closes the socket of a connection that no query is using.
    try:
        conn.pgconn.finish()
    except Exception:  # noqa: BLE001 - closing a broken connection must not mask the real error
        pass
