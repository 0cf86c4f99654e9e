"""SqliteStore: the embedded store, one SQLite file in WAL mode; the only module that speaks SQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

from litejobs.errors import IdempotencyConflict, JobFinished, JobNotRetryable, NotFound, QueueFull, StorageFull
from litejobs.jobs import Job, JobResult, JobSpec, JobState, new_job_id
from litejobs.store import Recovered, StoreUnavailable, Submitted
from litejobs.store.rows import CANCELLED_RESULT, guarded_status
from litejobs.store.sqlite_artefacts import Artefacts
from litejobs.store.sqlite_depth import QueueGauge
from litejobs.store.sqlite_housekeeping import Housekeeping
from litejobs.store.sqlite_open import admitted_pages, connect, migrate, used_pages
from litejobs.store.sqlite_rows import (
    JOB_COLUMNS,
    claimable,
    dumps,
    end_attempt,
    fetch_job,
    job_of_row,
    open_attempts,
    read_rows,
)
from litejobs.store.sqlite_webhooks import WebhookDeliveries
from litejobs.store.writer import GroupWriter, is_disk_full

#: due delayed jobs one claim makes waiting; the claims that follow take the rest
PROMOTE_BATCH = 100
#: delayed jobs whose run_at has come, oldest first (a claim's, and promote_due's)
_PROMOTE = (
    "UPDATE jobs SET status = 'waiting', updated_at = ? WHERE seq IN (SELECT seq FROM jobs "
    f"WHERE status = 'delayed' AND run_at <= ? ORDER BY run_at LIMIT ?) RETURNING {JOB_COLUMNS}"
)


class SqliteStore(WebhookDeliveries, Housekeeping, Artefacts):
    """Writes go through one GroupWriter connection; reads use a second connection (WAL lets them
    run beside the writer)."""

    def __init__(self, path: str | Path, *, max_db_mb: int = 0) -> None:
        self.path = str(path)
        #: the file's size limit in MiB (SQLite's max_page_count); 0: none
        self.max_db_mb = max_db_mb
        self._write_conn: aiosqlite.Connection | None = None
        self._read_conn: aiosqlite.Connection | None = None
        self._writer: GroupWriter | None = None
        #: pages new jobs may fill (max_db_mb); the rest up to max_page_count is for stored jobs to run
        self._admitted_pages = 0
        self._depth = QueueGauge()

    async def __aenter__(self) -> SqliteStore:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._write_conn = await connect(self.path, self.max_db_mb)
            await self._write_conn.execute("PRAGMA journal_mode = WAL")
            await migrate(self._write_conn)
            # the writer runs batches on the loop's thread: it must never wait there for a lock,
            # nor checkpoint there (writer.py)
            for pragma in ("busy_timeout = 0", "wal_autocheckpoint = 0"):
                await self._write_conn.execute(f"PRAGMA {pragma}")
            self._read_conn = await connect(self.path, self.max_db_mb)
            self._admitted_pages = await admitted_pages(self._write_conn, self.max_db_mb)
        except BaseException as exc:
            await self.__aexit__(None, None, None)
            if is_disk_full(exc):
                raise StorageFull(self._full_message()) from exc
            if isinstance(exc, (OSError, sqlite3.Error, StoreUnavailable)):
                raise StoreUnavailable.opening(self.path, exc) from exc
            raise
        self._writer = GroupWriter(self._write_conn, full_message=self._full_message(), name=self.path)
        self._writer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        for conn in (self._read_conn, self._write_conn):
            if conn is not None:
                await conn.close()
        self._read_conn = self._write_conn = None

    def _full_message(self) -> str | None:
        if self.max_db_mb <= 0:
            return None
        return (
            f"the database is full (store.max_db_mb = {self.max_db_mb}) or its disk is; nothing was stored. "
            "Retry once space is freed: finished jobs are deleted store.retention_s after they end"
        )

    async def _write(self, op: Any) -> Any:
        assert self._writer is not None, "store is not open"
        return await self._writer.run(op)

    async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        assert self._read_conn is not None, "store is not open"
        # One hop that steps the statement to its end and resets it. As execute, fetchall and close
        # hops, reads of concurrent requests interleave, some statement of the connection is always
        # open, and its read transaction (its WAL snapshot) never ends: a job committed before its
        # 202 could answer 404 to the GET that follows.
        return await self._read_conn._execute(read_rows, self._read_conn._conn, sql, params)  # type: ignore[no-any-return]

    # --- submit and read ---------------------------------------------------------------------

    async def submit(self, specs: list[JobSpec], now_ms: int, max_depth: int) -> list[Submitted]:
        def op(conn: sqlite3.Connection) -> list[Submitted]:
            out: list[Submitted] = []
            fresh = 0
            for spec in specs:
                replay = self._find_replay(conn, spec)
                if replay is not None:
                    out.append(Submitted(replay, True))
                    continue
                fresh += 1
                out.append(Submitted(self._insert(conn, spec, now_ms), False))
            if fresh:
                depth = self._depth.depth(conn, fresh, max_depth)
                if depth > max_depth:
                    raise QueueFull(f"the queue holds {depth - fresh} jobs (queue.max_depth = {max_depth})")
                # admitted up to max_db_mb: the room above it is for the stored jobs to run and end
                if self._admitted_pages and used_pages(conn) > self._admitted_pages:
                    raise StorageFull(self._full_message())
            return out

        return await self._write(op)

    @staticmethod
    def _find_replay(conn: sqlite3.Connection, spec: JobSpec) -> Job | None:
        if spec.idempotency_key is None:
            return None
        row = conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE owner = ? AND idempotency_key = ?",
            (spec.owner, spec.idempotency_key),
        ).fetchone()
        if row is None:
            return None
        if row["request_hash"] != spec.request_hash:
            raise IdempotencyConflict()
        return job_of_row(row)

    @staticmethod
    def _insert(conn: sqlite3.Connection, spec: JobSpec, now_ms: int) -> Job:
        run_at = now_ms + int(spec.delay_s * 1000)
        status = JobState.DELAYED if spec.delay_s > 0 else JobState.WAITING
        job_id = new_job_id()
        cursor = conn.execute(
            "INSERT INTO jobs (id, kind, owner, status, priority, run_at, input, meta, webhook, "
            "max_attempts, timeout_s, idempotency_key, request_hash, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id, spec.kind, spec.owner, status.value, spec.priority, run_at,
                dumps(spec.input), dumps(spec.meta),
                None if spec.webhook is None else dumps(spec.webhook),
                spec.max_attempts, spec.timeout_s, spec.idempotency_key, spec.request_hash,
                now_ms, now_ms,
            ),
        )  # fmt: skip
        # the job as a re-read would give it, without the re-read (a third of a submit's store time)
        job = Job(
            id=job_id, kind=spec.kind, status=status, input=spec.input, owner=spec.owner, meta=spec.meta,
            priority=spec.priority, attempts=0, max_attempts=spec.max_attempts, timeout_s=float(spec.timeout_s),
            created_at=now_ms, updated_at=now_ms, run_at=run_at, webhook=spec.webhook,
        )  # fmt: skip
        job.seq = cursor.lastrowid  # type: ignore[attr-defined]
        job.request_hash = spec.request_hash  # type: ignore[attr-defined]
        return job

    async def get(self, job_id: str) -> Job | None:
        rows = await self._read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return job_of_row(rows[0]) if rows else None

    async def list_jobs(
        self, owner: str | None, status: str | None, kind: str | None, limit: int, before_seq: int | None
    ) -> tuple[list[Job], int | None]:
        where, params = [], []
        for column, value in (("owner", owner), ("status", status), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = await self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY seq DESC LIMIT ?", (*params, limit + 1)
        )
        jobs = [job_of_row(r) for r in rows[:limit]]
        next_cursor = rows[limit - 1]["seq"] if len(rows) > limit else None
        return jobs, next_cursor

    # --- the worker's side -------------------------------------------------------------------

    async def claim(
        self, limit: int, worker_id: str, now_ms: int, lease_ms: int, *, idle: bool = True, promote: bool = True
    ) -> list[Job]:
        """`promote=False`: the caller promotes due jobs itself (promote_due), and announces them."""

        def op(conn: sqlite3.Connection) -> list[Job]:
            if promote:  # a few due jobs at a time: all at once could need more room than a full file has
                conn.execute(_PROMOTE, (now_ms, now_ms, PROMOTE_BATCH)).fetchall()
            candidates = conn.execute(
                "SELECT seq, recoveries FROM jobs WHERE status = 'waiting' ORDER BY priority DESC, run_at, seq LIMIT ?",
                (limit,),
            ).fetchall()
            chosen = claimable(candidates, idle)
            if not chosen:
                return []
            rows = conn.execute(
                "UPDATE jobs SET status = 'active', attempts = attempts + 1, lease_until = ?, "
                "lease_owner = ?, started_at = COALESCE(started_at, ?), updated_at = ?, progress = NULL "
                f"WHERE seq IN ({','.join('?' * len(chosen))}) AND status = 'waiting' "
                f"RETURNING {JOB_COLUMNS}",
                (now_ms + lease_ms, worker_id, now_ms, now_ms, *chosen),
            ).fetchall()
            jobs = sorted((job_of_row(r) for r in rows), key=lambda j: (-j.priority, j.run_at))
            open_attempts(conn, jobs, now_ms)
            return jobs

        return await self._write(op)

    async def promote_due(self, now_ms: int, limit: int) -> list[Job]:
        """Make up to `limit` delayed jobs whose run_at has come waiting; returns them as they now
        are, for the caller to announce (`waiting` events and webhooks)."""
        return await self._write(lambda conn: [job_of_row(r) for r in conn.execute(_PROMOTE, (now_ms, now_ms, limit))])

    async def lost_leases(self, job_ids: list[str], worker_id: str) -> set[str]:
        """Of these jobs, those no longer active under `worker_id`: cancelled, or recovered, through
        another process on the file, which has no way to tell this one. A read: the worker asks
        every `[store] recheck_s` without taking the write lock the other process needs."""
        rows = await self._read(
            "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?)) "
            "AND status = 'active' AND lease_owner = ?",
            (dumps(job_ids), worker_id),
        )
        return set(job_ids) - {r[0] for r in rows}

    async def recover_expired(
        self, now_ms: int, max_recoveries: int, dead_owners: list[str] | None = None, *, retention_ms: int
    ) -> Recovered:
        self._depth.recovering()  # before its op is queued: any submit after it counts the queue again
        return await super().recover_expired(now_ms, max_recoveries, dead_owners, retention_ms=retention_ms)

    async def heartbeat(self, job_ids: list[str], worker_id: str, lease_until_ms: int) -> set[str]:
        if not job_ids:
            return set()

        def op(conn: sqlite3.Connection) -> set[str]:
            marks = ",".join("?" * len(job_ids))
            rows = conn.execute(
                f"UPDATE jobs SET lease_until = ? WHERE id IN ({marks}) AND status = 'active' "
                "AND lease_owner = ? RETURNING id",
                (lease_until_ms, *job_ids, worker_id),
            ).fetchall()
            return {r["id"] for r in rows}

        return await self._write(op)

    async def finish(
        self, job_id: str, worker_id: str, result: JobResult, now_ms: int, expires_at_ms: int
    ) -> Job | None:
        def op(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                "UPDATE jobs SET status = ?, result_available = 1, completed_at = ?, updated_at = ?, "
                "expires_at = ?, lease_until = NULL, error = NULL "
                f"WHERE id = ? AND status = 'active' AND lease_owner = ? RETURNING {JOB_COLUMNS}",
                (result.status.value, now_ms, now_ms, expires_at_ms, job_id, worker_id),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "INSERT OR REPLACE INTO results (job_id, outputs, stats) VALUES (?, ?, ?)",
                (job_id, dumps(result.outputs), dumps(result.stats)),
            )
            end_attempt(conn, job_id, now_ms, result.status.value, None)
            return job_of_row(row)

        return await self._write(op)

    async def fail(
        self,
        job_id: str,
        worker_id: str,
        error: dict[str, Any],
        retry_at_ms: int | None,
        now_ms: int,
        expires_at_ms: int,
    ) -> Job | None:
        def op(conn: sqlite3.Connection) -> Job | None:
            if retry_at_ms is None:
                sql = (
                    "UPDATE jobs SET status = 'failed', error = ?, completed_at = ?, updated_at = ?, "
                    "expires_at = ?, lease_until = NULL WHERE id = ? AND status = 'active' AND lease_owner = ?"
                )
                params: tuple[Any, ...] = (dumps(error), now_ms, now_ms, expires_at_ms, job_id, worker_id)
            else:
                sql = (
                    "UPDATE jobs SET status = 'delayed', error = ?, run_at = ?, updated_at = ?, "
                    "lease_until = NULL WHERE id = ? AND status = 'active' AND lease_owner = ?"
                )
                params = (dumps(error), retry_at_ms, now_ms, job_id, worker_id)
            row = conn.execute(f"{sql} RETURNING {JOB_COLUMNS}", params).fetchone()
            if row is None:
                return None
            if retry_at_ms is not None:
                self._depth.added(1)
            end_attempt(conn, job_id, now_ms, "failed" if retry_at_ms is None else "retry", error)
            return job_of_row(row)

        return await self._write(op)

    async def release(self, job_ids: list[str], worker_id: str, now_ms: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            for job_id in job_ids:
                changed = conn.execute(
                    "UPDATE jobs SET status = 'waiting', attempts = attempts - 1, lease_until = NULL, "
                    "lease_owner = NULL, updated_at = ? WHERE id = ? AND status = 'active' AND lease_owner = ?",
                    (now_ms, job_id, worker_id),
                ).rowcount
                if changed:
                    self._depth.added(1)
                    conn.execute("DELETE FROM attempts WHERE job_id = ? AND ended_at IS NULL", (job_id,))

        await self._write(op)

    async def set_progress(self, job_id: str, progress: dict[str, Any], now_ms: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND status = 'active'",
                (dumps(progress), now_ms, job_id),
            )

        await self._write(op)

    # --- the owner's side --------------------------------------------------------------------

    async def cancel(self, job_id: str, now_ms: int, expires_at_ms: int) -> tuple[Job, JobState]:
        def op(conn: sqlite3.Connection) -> tuple[Job, JobState]:
            job = fetch_job(conn, job_id)
            if job is None:
                raise NotFound()
            if job.is_terminal:
                raise JobFinished(f"the job is already {job.status.value}")
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', completed_at = ?, updated_at = ?, expires_at = ?, "
                f"lease_until = NULL, {CANCELLED_RESULT} "
                f"WHERE id = ? AND status IN {guarded_status(JobState.CANCELLED)}",
                (now_ms, now_ms, expires_at_ms, job_id),
            )
            end_attempt(conn, job_id, now_ms, "cancelled", None)
            updated = fetch_job(conn, job_id)
            assert updated is not None
            return updated, job.status

        return await self._write(op)

    async def retry(self, job_id: str, now_ms: int, max_depth: int) -> Job:
        def op(conn: sqlite3.Connection) -> Job:
            job = fetch_job(conn, job_id)
            if job is None:
                raise NotFound()
            if job.status not in (JobState.FAILED, JobState.CANCELLED):
                raise JobNotRetryable.because(job.status.value)
            # started_at goes too: the next claim sets it, so the new run's duration is its own
            conn.execute(
                "UPDATE jobs SET status = 'waiting', attempts = 0, recoveries = 0, run_at = ?, updated_at = ?, "
                "started_at = NULL, completed_at = NULL, expires_at = NULL, error = NULL, progress = NULL, "
                "result_available = 0 "
                f"WHERE id = ? AND status IN {guarded_status(JobState.WAITING)}",
                (now_ms, now_ms, job_id),
            )
            # the job joins the queue as one submit would; counted once it is in (the writer undoes
            # this op when it raises)
            depth = self._depth.depth(conn, 1, max_depth)
            if depth > max_depth:
                raise QueueFull(f"the queue holds {depth - 1} jobs (queue.max_depth = {max_depth})")
            conn.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM pages WHERE job_id = ?", (job_id,))
            updated = fetch_job(conn, job_id)
            assert updated is not None
            return updated

        return await self._write(op)
