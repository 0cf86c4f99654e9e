"""`litejobs migrate`: copy a SQLite database, every table and row, into an empty PostgreSQL one,
and the artefacts' bytes from its files folder into the database (where PostgreSQL nodes keep them
unless they share a files_dir)."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litejobs.errors import LitejobsError
from litejobs.files import MAX_DB_FILE_BYTES, check_name
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
    "attempts": ("job_id", "run", "number", "started_at", "ended_at", "outcome", "error"),
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
#: file bytes sent to PostgreSQL per COPY: bounds what the migration holds in memory at once
CHUNK_BYTES = 64 * 1024 * 1024


@dataclass
class Copied:
    """What a migration copied."""

    #: rows per table
    rows: dict[str, int]
    #: artefacts whose bytes went into the database, and their total size
    files: int = 0
    file_bytes: int = 0
    #: "<job_id>/<name>" of files recorded in SQLite but not in the folder (their records are
    #: copied; the file answers 404), and of those over MAX_DB_FILE_BYTES (left in the folder)
    missing: list[str] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)


class TargetNotEmpty(LitejobsError):
    """The PostgreSQL database already holds jobs; litejobs migrate only fills an empty one."""

    code = "target_not_empty"


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


async def copy_sqlite_to_postgres(
    sqlite_path: str | Path, url: str, *, files_dir: str | Path | None = None, file_bytes: bool = True
) -> Copied:
    """Copy every row in one PostgreSQL transaction (all or nothing), and with `file_bytes` every
    recorded artefact's bytes from `files_dir` (default `<sqlite_path>.files`). Stop the servers on
    the SQLite file first: jobs that change meanwhile would be copied half-way."""
    if not Path(sqlite_path).exists():
        raise FileNotFoundError(f"no SQLite database at {sqlite_path}")
    async with SqliteStore(sqlite_path):  # brings an older file to the current schema
        pass
    source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    copied = Copied({})
    try:
        # no statement timeout: one copy statement may move a 64 MiB chunk
        async with (
            PostgresStore(url, command_timeout_s=None) as target,
            target._pool.acquire() as conn,
            conn.transaction(),
        ):
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM jobs)"):
                raise TargetNotEmpty()
            for table, columns in TABLES.items():
                cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid")
                copied.rows[table] = 0
                while chunk := cursor.fetchmany(CHUNK_ROWS):
                    records = [_converted(table, row) for row in chunk]
                    await conn.copy_records_to_table(table, records=records, columns=list(columns))
                    copied.rows[table] += len(records)
            for table in _IDENTITIES:
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), "
                    f"(SELECT coalesce(max(seq), 0) + 1 FROM {table}), false)"
                )
            if file_bytes:
                folder = Path(files_dir) if files_dir else Path(f"{sqlite_path}.files")
                await _copy_file_bytes(source, folder, conn, copied)
    finally:
        source.close()
    return copied


async def _copy_file_bytes(source: sqlite3.Connection, folder: Path, conn: Any, copied: Copied) -> None:
    """Every recorded file's bytes into file_data, in COPYs of at most CHUNK_BYTES."""
    batch: list[tuple[str, str, bytes]] = []
    batch_bytes = 0
    for job_id, name in source.execute("SELECT job_id, name FROM files ORDER BY rowid"):
        size = await asyncio.to_thread(_size_of, folder, job_id, name)
        if size is not None and size > MAX_DB_FILE_BYTES:
            copied.too_large.append(f"{job_id}/{name}")
            continue
        data = None if size is None else await asyncio.to_thread(_read, folder / job_id / name)
        if data is None:
            copied.missing.append(f"{job_id}/{name}")
            continue
        if batch and batch_bytes + len(data) > CHUNK_BYTES:
            await conn.copy_records_to_table("file_data", records=batch, columns=["job_id", "name", "data"])
            batch, batch_bytes = [], 0
        batch.append((job_id, name, data))
        batch_bytes += len(data)
        copied.files += 1
        copied.file_bytes += len(data)
    if batch:
        await conn.copy_records_to_table("file_data", records=batch, columns=["job_id", "name", "data"])


def _size_of(folder: Path, job_id: str, name: str) -> int | None:
    """The artefact's size, or None when it is not a file in the folder."""
    try:
        check_name(job_id, name)  # a record naming something outside the folder is not followed
        path = folder / job_id / name
        return path.stat().st_size if path.is_file() else None
    except (ValueError, OSError):
        return None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
