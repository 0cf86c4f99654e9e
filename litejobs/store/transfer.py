"""`litejobs migrate`: copy a SQLite database, every table and row, into an empty PostgreSQL one."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from litejobs.store.postgres import PostgresStore
from litejobs.store.sqlite import SqliteStore

#: parents before children (foreign keys), each with the columns both schemas share
TABLES: dict[str, tuple[str, ...]] = {
    "jobs": (
        "seq", "id", "kind", "owner", "status", "priority", "run_at", "input", "meta", "webhook", "attempts",
        "max_attempts", "timeout_s", "recoveries", "lease_until", "lease_owner", "progress", "error",
        "result_available", "idempotency_key", "request_hash", "created_at", "updated_at", "started_at",
        "completed_at", "expires_at",
    ),
    "results": ("job_id", "outputs", "stats"),
    "attempts": ("job_id", "number", "started_at", "ended_at", "outcome", "error"),
    "files": ("job_id", "name", "content_type", "size"),
    "pages": ("job_id", "seq", "url", "data"),
    "webhook_deliveries": (
        "seq", "id", "job_id", "event", "url", "payload", "state", "attempts", "next_at", "last_status",
        "last_error", "created_at", "updated_at",
    ),
}  # fmt: skip
#: tables whose seq is an identity: after the copy it must continue past the copied rows
_IDENTITIES = ("jobs", "webhook_deliveries")
CHUNK_ROWS = 5000


class TargetNotEmpty(RuntimeError):
    """The PostgreSQL database already holds jobs; litejobs migrate only fills an empty one."""


def _converted(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    if table == "jobs":
        values = list(row)
        values[TABLES["jobs"].index("result_available")] = bool(values[TABLES["jobs"].index("result_available")])
        values[TABLES["jobs"].index("timeout_s")] = float(values[TABLES["jobs"].index("timeout_s")])
        return tuple(values)
    if table == "webhook_deliveries":
        index = TABLES[table].index("payload")
        return (*row[:index], bytes(row[index]), *row[index + 1 :])
    return row


async def copy_sqlite_to_postgres(sqlite_path: str | Path, url: str) -> dict[str, int]:
    """Copy every row in one PostgreSQL transaction (all or nothing); returns rows per table. Stop
    the servers on the SQLite file first: jobs that change meanwhile would be copied half-way."""
    if not Path(sqlite_path).exists():
        raise FileNotFoundError(f"no SQLite database at {sqlite_path}")
    async with SqliteStore(sqlite_path):  # brings an older file to the current schema
        pass
    source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    copied: dict[str, int] = {}
    try:
        async with PostgresStore(url) as target, target._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM jobs)"):
                raise TargetNotEmpty()
            for table, columns in TABLES.items():
                cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid")
                copied[table] = 0
                while chunk := cursor.fetchmany(CHUNK_ROWS):
                    records = [_converted(table, row) for row in chunk]
                    await conn.copy_records_to_table(table, records=records, columns=list(columns))
                    copied[table] += len(records)
            for table in _IDENTITIES:
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), "
                    f"(SELECT coalesce(max(seq), 0) + 1 FROM {table}), false)"
                )
    finally:
        source.close()
    return copied
