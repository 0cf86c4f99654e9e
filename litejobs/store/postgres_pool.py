"""The connection pool of a PostgresStore, bounded in time: a database that is down, or that does not
answer, fails a statement with StoreUnavailable within a known time instead of hanging.

Why: asyncpg waits for ever for a free connection and for an answer, and raises its own errors for a
lost server. A request then hung (a SIGSTOPped database) or answered 500 (a refused connection), and
a worker's outcome write looked like a crash. Every statement of the store goes through
`BoundedPool`, so each is bounded, and every way of not reaching the database (refused, reset, timed
out, a server shutting down or starting up, no free connection slot) becomes one error: the API
answers it `503 store_unavailable`, the worker retries its outcome writes on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from litejobs.errors import StoreUnavailable

try:
    import asyncpg
except ImportError:  # pragma: no cover - the optional extra
    asyncpg = None

log = logging.getLogger("litejobs.store")

#: opening a connection (also the pool's new ones while the database is away)
CONNECT_TIMEOUT_S = 5.0
#: one statement: generous for the store's own statements (milliseconds; an expiry sweep of 500 jobs
#: or counts over a large table take longer, not seconds). A caller with long statements (a bulk copy)
#: opens its PostgresStore with command_timeout_s=None
COMMAND_TIMEOUT_S = 10.0
#: waiting for a free pooled connection (and for a new one to open)
ACQUIRE_TIMEOUT_S = 10.0
#: handing a connection back (asyncpg waits there for a timed-out statement's cancellation; past this
#: the connection is dropped, and a new one opened when needed)
RELEASE_TIMEOUT_S = 2.0
#: the readiness probe's `SELECT 1`
PING_TIMEOUT_S = 2.0


def shown_url(url: str) -> str:
    """The URL with its password masked: fit for a message or a log."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


async def _keep_session(conn: Any) -> None:
    """The pool's reset between borrowers: nothing beyond what asyncpg always does (roll back an open
    transaction). litejobs keeps no session state on pooled connections (its advisory locks are
    transaction-scoped, LISTEN has its own connection), so asyncpg's default UNLISTEN / RESET ALL /
    CLOSE ALL round trip after every statement bought nothing; skipping it measured 1.4x more
    single-row reads per second."""


async def open_pool(url: str, size: int, command_timeout_s: float | None = COMMAND_TIMEOUT_S) -> BoundedPool:
    """Up to `size` connections, each statement bounded by `command_timeout_s` (None: unbounded).

    No connection floor (min_size 0): asyncpg (0.32) restores a floor in a task of its own that, while
    the database is away, logged a warning with a full traceback at every retry. Statements open
    connections as they need them (a connection idle for 5 minutes is closed, so a node idle that long
    opens one again: a few milliseconds), and BoundedPool logs the outage once and its end."""
    pool = await asyncpg.create_pool(
        url,
        min_size=0,
        max_size=size,
        reset=_keep_session,
        timeout=CONNECT_TIMEOUT_S,
        command_timeout=command_timeout_s,
    )
    return BoundedPool(pool)


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached or answer, as opposed to a statement it
    refused (a constraint, a syntax error), which is a bug or a conflict and not worth retrying."""
    if isinstance(exc, OSError):  # refused, reset, no route; TimeoutError (a statement, an acquire) too
        return True
    if asyncpg is None:  # pragma: no cover
        return False
    errors = asyncpg.exceptions
    if isinstance(
        exc,
        (
            errors.PostgresConnectionError,  # class 08: the connection failed or does not exist
            errors.OperatorInterventionError,  # class 57: shutting down, starting up, cancelled
            errors.TooManyConnectionsError,
        ),
    ):
        return True
    if isinstance(exc, errors.InternalClientError):  # a connection left mid-operation by an outage
        return True
    # asyncpg's own "connection is closed" / "pool is closing" (other InterfaceErrors are misuse)
    return isinstance(exc, errors.InterfaceError) and ("closed" in str(exc) or "closing" in str(exc))


class BoundedPool:
    """Wraps an asyncpg pool: `acquire()` and the statement shortcuts are bounded in time, and raise
    StoreUnavailable when the database cannot be reached. Logs each outage once, and its end."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        #: monotonic time at which the database was last found unreachable; None: not since opening
        self.unreachable_at: float | None = None
        self._down = False

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        """A pooled connection; anything raised in the block that says the database is away
        becomes StoreUnavailable (after a transaction in the block has been rolled back)."""
        try:
            conn = await self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
            try:
                yield conn
            except Exception as exc:
                if asyncpg is not None and isinstance(exc, asyncpg.exceptions.InternalClientError):
                    # seen once after an outage: "cannot switch to state 12; another operation is in
                    # progress"; such a connection must not serve another statement
                    conn.terminate()
                raise
            finally:
                await self._pool.release(conn, timeout=RELEASE_TIMEOUT_S)
        except Exception as exc:
            if not unreachable(exc):
                raise
            self._unreachable(exc)
            raise StoreUnavailable() from exc
        if self._down:
            self._down = False
            log.info("the database answers again")

    def _unreachable(self, exc: BaseException) -> None:
        self.unreachable_at = time.monotonic()
        if not self._down:
            self._down = True
            reason = str(exc) or type(exc).__name__
            log.warning("the database cannot be reached (%s); requests that need it answer 503", reason)
            # the one traceback of the outage, for whoever debugs the connection itself
            log.debug("the error that found the database unreachable", exc_info=exc)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return str(await conn.execute(sql, *args))

    async def ping(self) -> bool:
        """Whether the database answers a `SELECT 1` within PING_TIMEOUT_S."""
        try:
            await asyncio.wait_for(self.fetchval("SELECT 1"), PING_TIMEOUT_S)
        except StoreUnavailable:
            return False
        except TimeoutError as exc:
            self._unreachable(exc)
            return False
        return True

    async def close(self) -> None:
        await self._pool.close()
