"""The LISTEN connection of a PostgresStore: notices from other nodes, re-established after a drop.

A node keeps one connection outside its pool that LISTENs on the work and changes channels. It can
be lost (a server restart, an idle-connection killer, pg_terminate_backend); the node then
connects again with capped backoff, LISTENs again, and calls `on_reconnect` once, because notices
sent while it was deaf are gone (PostgreSQL keeps them for listening sessions only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from litejobs.store.postgres_schema import CHANGES_CHANNEL, WORK_CHANNEL

try:
    import asyncpg
except ImportError:  # pragma: no cover - the optional extra
    asyncpg = None

log = logging.getLogger("litejobs.store")

#: the connection's application_name: how an operator (or a test) finds it in pg_stat_activity
APPLICATION_NAME = "litejobs-listen"
#: the wait before the first reconnect; doubled after each failure, up to RECONNECT_MAX_S
RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 10.0
#: a quiet connection is checked with a round trip this often: a dead network path (half-open TCP)
#: reports no loss of its own, unlike a closed socket or a terminated backend
CHECK_EVERY_S = 30.0
CHECK_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0

#: called with a notice's payload
Handler = Callable[[str], None]


class Notices:
    """Mixed into PostgresStore: who is told of what other nodes announce."""

    #: this store's name in its change notices, so that it can skip its own
    node_id: str
    _wake_callbacks: list[Callable[[], None]]
    _change_callbacks: list[Callable[[str, str], None]]
    _resync_callbacks: list[Callable[[], None]]

    def on_work_available(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever any node makes a job claimable (LISTEN/NOTIFY), and once after
        the listener reconnects. While it is lost the workers' idle poll still finds the work."""
        self._wake_callbacks.append(callback)

    def on_remote_change(self, poke: Callable[[str, str], None], resync: Callable[[], None]) -> None:
        """Call `poke(job_id, owner)` when another node changed a job (this node's own notices are
        skipped: it tells its readers itself), and `resync()` once after the listener reconnects,
        since notices sent meanwhile were missed."""
        self._change_callbacks.append(poke)
        self._resync_callbacks.append(resync)

    def _notice_handlers(self) -> dict[str, Handler]:
        return {WORK_CHANNEL: self._on_work, CHANGES_CHANNEL: self._on_change}

    def _on_work(self, _payload: str) -> None:
        for callback in self._wake_callbacks:
            callback()

    def _on_change(self, payload: str) -> None:
        node, _, rest = payload.partition(" ")
        if node == self.node_id:
            return
        job_id, _, owner = rest.partition(" ")
        for callback in self._change_callbacks:
            callback(job_id, owner)

    def _on_reconnect(self) -> None:
        for callback in [*self._wake_callbacks, *self._resync_callbacks]:
            callback()


class Listener:
    """`async with Listener(url, {channel: handler}, on_reconnect):` LISTENs until closed, and
    reconnects whenever the connection is lost."""

    def __init__(self, url: str, handlers: dict[str, Handler], on_reconnect: Callable[[], None]) -> None:
        self.url = url
        self.handlers = handlers
        self.on_reconnect = on_reconnect
        self._conn: Any = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Listener:
        self._conn = await self._connect()  # at start a node that cannot LISTEN does not start
        self._task = asyncio.create_task(self._supervise(), name="litejobs-listen")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        conn, self._conn = self._conn, None
        await _close(conn)

    async def _connect(self) -> Any:
        conn = await asyncpg.connect(
            self.url, timeout=CONNECT_TIMEOUT_S, server_settings={"application_name": APPLICATION_NAME}
        )
        try:
            conn.add_termination_listener(self._on_terminated)
            for channel, handler in self.handlers.items():
                await conn.add_listener(channel, _relay(handler))
        except BaseException:
            await _close(conn)
            raise
        return conn

    def _on_terminated(self, conn: Any) -> None:
        if conn is self._conn:  # not a connection this listener closed itself
            self._lost.set()

    async def _supervise(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), CHECK_EVERY_S)
            if not self._lost.is_set() and await self._alive():
                continue
            log.warning(
                "the LISTEN connection to PostgreSQL was lost; reconnecting (meanwhile workers, "
                "waits and event streams find other nodes' changes by polling)"
            )
            conn, self._conn = self._conn, None
            self._lost.clear()
            await _close(conn)
            tries = await self._reconnect()
            log.info("the LISTEN connection to PostgreSQL is back (after %d attempt(s))", tries)
            self.on_reconnect()

    async def _alive(self) -> bool:
        try:
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), CHECK_TIMEOUT_S)
        except Exception:
            return False
        return True

    async def _reconnect(self) -> int:
        """Connect until it works (or the store closes: this task is cancelled); the attempts made."""
        delay_s = RECONNECT_FIRST_S
        tries = 0
        while True:
            await asyncio.sleep(delay_s)
            tries += 1
            try:
                conn = await self._connect()
            except Exception as exc:
                log.debug("LISTEN reconnect attempt %d failed: %s", tries, exc)
                delay_s = min(delay_s * 2, RECONNECT_MAX_S)
                continue
            self._conn = conn
            if conn.is_closed():  # lost again before it was ours to watch
                self._lost.set()
            return tries


def _relay(handler: Handler) -> Callable[[Any, int, str, str], None]:
    return lambda _conn, _pid, _channel, payload: handler(payload)


async def _close(conn: Any) -> None:
    if conn is None or conn.is_closed():
        return
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception:  # a dead network path may never answer the goodbye
        conn.terminate()
