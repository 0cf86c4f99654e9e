"""What SqliteStore keeps beside a job: its result, attempts, files and (crawl) pages."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from litejobs.jobs import Attempt, JobResult
from litejobs.store import StoredFile
from litejobs.store.rows import ATTEMPT_COLUMNS, attempt_of_row, result_of_row
from litejobs.store.sqlite_rows import dumps, loads


class Artefacts:
    """Mixed into SqliteStore."""

    if TYPE_CHECKING:

        async def _write(self, op: Callable[[sqlite3.Connection], Any]) -> Any: ...

        async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]: ...

    async def get_result(self, job_id: str) -> JobResult | None:
        rows = await self._read(
            "SELECT j.status, r.outputs, r.stats FROM results r JOIN jobs j ON j.id = r.job_id WHERE r.job_id = ?",
            (job_id,),
        )
        if not rows:
            return None
        return result_of_row(rows[0])

    async def attempts(self, job_id: str) -> list[Attempt]:
        rows = await self._read(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? ORDER BY run, number", (job_id,)
        )
        return [attempt_of_row(r) for r in rows]

    async def add_file(self, file: StoredFile) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO files (job_id, name, content_type, size) VALUES (?, ?, ?, ?)",
                (file.job_id, file.name, file.content_type, file.size),
            )

        await self._write(op)

    async def get_file(self, job_id: str, name: str) -> StoredFile | None:
        rows = await self._read(
            "SELECT job_id, name, content_type, size FROM files WHERE job_id = ? AND name = ?", (job_id, name)
        )
        return StoredFile(*rows[0]) if rows else None

    async def add_pages(self, job_id: str, pages: list[dict[str, Any]]) -> None:
        """Append crawl pages (each a JSON object with at least `url`), numbered in arrival order."""
        if not pages:
            return

        def op(conn: sqlite3.Connection) -> None:
            (start,) = conn.execute(
                "SELECT coalesce(max(seq), -1) + 1 FROM pages WHERE job_id = ?", (job_id,)
            ).fetchone()
            conn.executemany(
                "INSERT INTO pages (job_id, seq, url, data) VALUES (?, ?, ?, ?)",
                [(job_id, start + i, page["url"], dumps(page)) for i, page in enumerate(pages)],
            )

        await self._write(op)

    async def pages(self, job_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT data FROM pages WHERE job_id = ? AND seq >= ? ORDER BY seq LIMIT ?", (job_id, offset, limit)
        )
        return [loads(r[0]) for r in rows]

    async def page_count(self, job_id: str) -> int:
        rows = await self._read("SELECT count(*) FROM pages WHERE job_id = ?", (job_id,))
        return int(rows[0][0])

    async def page_urls(self, job_id: str) -> list[str]:
        rows = await self._read("SELECT url FROM pages WHERE job_id = ? ORDER BY seq", (job_id,))
        return [r[0] for r in rows]
