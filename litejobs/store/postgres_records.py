"""The record-keeping half of PostgresStore: results, attempts, files, crawl pages, and the figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litejobs.jobs import Attempt, JobResult
from litejobs.store import StoredFile
from litejobs.store.postgres_schema import WORK_CHANNEL
from litejobs.store.rows import ATTEMPT_COLUMNS, attempt_of_row, dumps, job_of_row, loads, result_of_row, stats_of

job_of = job_of_row


async def end_attempt(conn: Any, job_id: str, now_ms: int, outcome: str, error: Any) -> None:
    await conn.execute(
        "UPDATE attempts SET ended_at = $1, outcome = $2, error = $3 WHERE job_id = $4 AND ended_at IS NULL",
        now_ms,
        outcome,
        None if error is None else dumps(error),
        job_id,
    )


async def notify_work(conn: Any) -> None:
    # sent at commit, and only then: a listener never wakes for a job it cannot see yet
    await conn.execute(f"NOTIFY {WORK_CHANNEL}")


class Records:
    """Mixed into PostgresStore: reads, and writes that only append beside a job (no state change)."""

    if TYPE_CHECKING:

        async def _fetch(self, sql: str, *args: Any) -> list[Any]: ...

    async def next_run_at(self) -> int | None:
        rows = await self._fetch("SELECT min(run_at) FROM jobs WHERE status = 'delayed'")
        return rows[0][0] if rows else None

    async def get_result(self, job_id: str) -> JobResult | None:
        rows = await self._fetch(
            "SELECT j.status, r.outputs, r.stats FROM results r JOIN jobs j ON j.id = r.job_id WHERE r.job_id = $1",
            job_id,
        )
        if not rows:
            return None
        return result_of_row(rows[0])

    async def attempts(self, job_id: str) -> list[Attempt]:
        rows = await self._fetch(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = $1 ORDER BY run, number", job_id
        )
        return [attempt_of_row(r) for r in rows]

    async def add_file(self, file: StoredFile) -> None:
        await self._fetch(
            "INSERT INTO files (job_id, name, content_type, size) VALUES ($1, $2, $3, $4) ON CONFLICT (job_id, name) "
            "DO UPDATE SET content_type = EXCLUDED.content_type, size = EXCLUDED.size",
            file.job_id,
            file.name,
            file.content_type,
            file.size,
        )

    async def get_file(self, job_id: str, name: str) -> StoredFile | None:
        rows = await self._fetch(
            "SELECT job_id, name, content_type, size FROM files WHERE job_id = $1 AND name = $2", job_id, name
        )
        return StoredFile(*rows[0]) if rows else None

    async def put_file_data(self, job_id: str, name: str, data: bytes) -> None:
        await self._fetch(
            "INSERT INTO file_data (job_id, name, data) VALUES ($1, $2, $3) "
            "ON CONFLICT (job_id, name) DO UPDATE SET data = EXCLUDED.data",
            job_id,
            name,
            data,
        )

    async def file_data(self, job_id: str, name: str) -> bytes | None:
        rows = await self._fetch("SELECT data FROM file_data WHERE job_id = $1 AND name = $2", job_id, name)
        return bytes(rows[0][0]) if rows else None

    async def add_pages(self, job_id: str, pages: list[dict[str, Any]]) -> None:
        """Append crawl pages, numbered in arrival order. A crawl saves pages from several fetches at
        once, and two inserts reading the same max(seq) would collide: a per-job transaction lock
        queues them (SQLite's single writer does the same by itself)."""
        if not pages:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('litejobs.pages'), hashtext($1))", job_id)
            await conn.execute(
                "INSERT INTO pages (job_id, seq, url, data) SELECT $1, "
                "(SELECT coalesce(max(seq), -1) FROM pages WHERE job_id = $1) + p.ord, p.url, p.data "
                "FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS p(url, data, ord)",
                job_id,
                [page["url"] for page in pages],
                [dumps(page) for page in pages],
            )

    async def pages(self, job_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT data FROM pages WHERE job_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3", job_id, offset, limit
        )
        return [loads(r[0]) for r in rows]

    async def page_count(self, job_id: str) -> int:
        rows = await self._fetch("SELECT count(*) FROM pages WHERE job_id = $1", job_id)
        return int(rows[0][0])

    async def page_urls(self, job_id: str) -> list[str]:
        rows = await self._fetch("SELECT url FROM pages WHERE job_id = $1 ORDER BY seq", job_id)
        return [r[0] for r in rows]

    async def active_owners(self) -> list[str]:
        rows = await self._fetch("SELECT DISTINCT lease_owner FROM jobs WHERE status = 'active'")
        return [r[0] for r in rows if r[0]]

    async def stats(self, now_ms: int) -> dict[str, Any]:
        by_status = await self._fetch("SELECT status, count(*) FROM jobs GROUP BY status")
        oldest = await self._fetch("SELECT min(run_at) FROM jobs WHERE status = 'waiting'")
        return stats_of([(r[0], r[1]) for r in by_status], oldest[0][0] if oldest else None, now_ms)

    async def counts_by_status_kind(self) -> dict[tuple[str, str], int]:
        rows = await self._fetch("SELECT status, kind, count(*) FROM jobs GROUP BY status, kind")
        return {(r[0], r[1]): r[2] for r in rows}
