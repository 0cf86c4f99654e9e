"""Opening SqliteStore's connections: per-connection pragmas, the size limits, and migrations."""

from __future__ import annotations

import sqlite3

import aiosqlite

from litejobs.store import StoreUnavailable
from litejobs.store.schema import MIGRATIONS
from litejobs.store.sqlite_rows import statements_of

MIB = 1024 * 1024
#: Room above max_db_mb that only jobs already stored may use (promotion, claim, attempts, results,
#: webhook deliveries): new jobs are admitted up to max_db_mb, SQLite's hard limit sits this far above,
#: so a full file still runs and ends its jobs, and they expire and give the space back.
HEADROOM_FRACTION = 0.1
MIN_HEADROOM_MB = 1


def page_limits(max_db_mb: int, page_size: int) -> tuple[int, int]:
    """(pages new jobs may fill, SQLite's max_page_count) for a limit of max_db_mb MiB."""
    admitted = max(1, max_db_mb * MIB // page_size)
    headroom = max(MIN_HEADROOM_MB * MIB // page_size, int(admitted * HEADROOM_FRACTION))
    return admitted, admitted + headroom


def used_pages(conn: sqlite3.Connection) -> int:
    """Pages holding data, the current transaction's writes included (free pages are reused first)."""
    (count,) = conn.execute("PRAGMA page_count").fetchone()
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    return int(count) - int(free)


async def admitted_pages(conn: aiosqlite.Connection, max_db_mb: int) -> int:
    """The pages new jobs may fill (0: no limit)."""
    if max_db_mb <= 0:
        return 0
    return page_limits(max_db_mb, await _page_size(conn))[0]


async def _page_size(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA page_size") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 4096


async def connect(path: str, max_db_mb: int) -> aiosqlite.Connection:
    """A connection with the store's pragmas; closed again when one fails (a file that is not a
    database fails only at the first statement), since its thread would keep the process alive."""
    # check_same_thread: the writer's batches run on the loop's thread (writer.py)
    conn = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
    try:
        await _configure(conn, max_db_mb)
    except BaseException:
        await conn.close()
        raise
    return conn


async def _configure(conn: aiosqlite.Connection, max_db_mb: int) -> None:
    conn.row_factory = sqlite3.Row
    # synchronous=NORMAL in WAL is durable across process crashes (the 202 promise); only an OS
    # crash or power loss can drop the last transactions.
    for pragma in ("busy_timeout = 5000", "synchronous = NORMAL", "foreign_keys = ON"):
        await conn.execute(f"PRAGMA {pragma}")
    if max_db_mb > 0:
        # per connection, not stored in the file; a write past it fails with SQLITE_FULL, which the
        # writer turns into StorageFull (507). Below the file's current size it means "no growth".
        _, pages = page_limits(max_db_mb, await _page_size(conn))
        # it answers with a row: read it, or the open statement holds a read transaction
        async with conn.execute(f"PRAGMA max_page_count = {pages}") as cur:
            await cur.fetchall()


async def migrate(conn: aiosqlite.Connection) -> None:
    """Bring the file to the latest schema in one transaction; a newer file is refused untouched."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        async with conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = row[0] if row else 0
        if version > len(MIGRATIONS):
            raise StoreUnavailable(
                f"its schema version {version} is newer than this litejobs ({len(MIGRATIONS)}): upgrade litejobs"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in statements_of(script):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number}")
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
