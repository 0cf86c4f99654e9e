"""SqliteStore: the embedded store, one SQLite file in WAL mode; the only module that speaks SQL."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosqlite

from litejobs.errors import IdempotencyConflict, JobFinished, NotFound, QueueFull, StorageFull
from litejobs.jobs import Attempt, Job, JobResult, JobSpec, JobState, new_job_id, sources_of
from litejobs.store import Recovered, StoredFile, Submitted
from litejobs.store.schema import MIGRATIONS
from litejobs.store.sqlite_webhooks import WebhookDeliveries
from litejobs.store.writer import GroupWriter, is_disk_full

_JOB_COLUMNS = (
    "seq, id, kind, owner, status, priority, run_at, input, meta, webhook, attempts, max_attempts, "
    "timeout_s, recoveries, lease_until, lease_owner, progress, error, result_available, "
    "created_at, updated_at, started_at, completed_at, expires_at, request_hash"
)
_QUEUED = "('waiting', 'delayed')"


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _job(row: sqlite3.Row) -> Job:
    job = Job(
        id=row["id"],
        kind=row["kind"],
        status=JobState(row["status"]),
        input=json.loads(row["input"]),
        owner=row["owner"],
        meta=json.loads(row["meta"]),
        priority=row["priority"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        timeout_s=float(row["timeout_s"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        run_at=row["run_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        expires_at=row["expires_at"],
        lease_until=row["lease_until"],
        progress=_loads(row["progress"]),
        error=_loads(row["error"]),
        webhook=_loads(row["webhook"]),
        recoveries=row["recoveries"],
        result_available=bool(row["result_available"]),
    )
    job.seq = row["seq"]  # type: ignore[attr-defined]
    job.request_hash = row["request_hash"]  # type: ignore[attr-defined]
    return job


def _read_rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
    cursor = conn.execute(sql, params)
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


def _fetch_job(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _job(row)


def _statements(script: str) -> list[str]:
    """Split a migration into statements; sqlite3.complete_statement knows comments and triggers."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(part.strip().startswith("--") for part in buffer.strip().splitlines()):
        raise ValueError(f"incomplete SQL statement in a migration: {buffer.strip()[:80]}")
    return statements


def _guarded_status(target: JobState) -> str:
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(sources_of(target))) + ")"


def _end_attempt(conn: sqlite3.Connection, job_id: str, now_ms: int, outcome: str, error: Any) -> None:
    conn.execute(
        "UPDATE attempts SET ended_at = ?, outcome = ?, error = ? WHERE job_id = ? AND ended_at IS NULL",
        (now_ms, outcome, None if error is None else _dumps(error), job_id),
    )


def _claimable(candidates: list[sqlite3.Row], idle: bool) -> list[int]:
    """The seqs to claim of the due jobs, in claim order. A job that was running when its worker
    died (recoveries > 0) may have killed it: it runs alone, claimed only by an idle caller, so that
    another crash is charged to it and not to jobs beside it. Claims stop at it meanwhile, so the
    queue drains towards it instead of passing it by for ever."""
    chosen: list[int] = []
    for row in candidates:
        if row["recoveries"] > 0:
            if not chosen and idle:
                chosen.append(row["seq"])
            break
        chosen.append(row["seq"])
    return chosen


class SqliteStore(WebhookDeliveries):
    """Writes go through one GroupWriter connection; reads use a second connection (WAL lets them
    run beside the writer)."""

    def __init__(self, path: str | Path, *, max_db_mb: int = 0) -> None:
        self.path = str(path)
        #: the file's size limit in MiB (SQLite's max_page_count); 0: none
        self.max_db_mb = max_db_mb
        self._write_conn: aiosqlite.Connection | None = None
        self._read_conn: aiosqlite.Connection | None = None
        self._writer: GroupWriter | None = None
        #: (queue depth when last counted, monotonic time of that count, jobs submitted since)
        self._depth_seen: tuple[int, float, int] = (0, -1e9, 0)

    async def __aenter__(self) -> SqliteStore:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._write_conn = await self._connect()
            await self._write_conn.execute("PRAGMA journal_mode = WAL")
            await self._migrate(self._write_conn)
            self._read_conn = await self._connect()
        except BaseException as exc:
            await self.__aexit__(None, None, None)
            if is_disk_full(exc):
                raise StorageFull(self._full_message()) from exc
            raise
        self._writer = GroupWriter(self._write_conn, full_message=self._full_message())
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

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        # synchronous=NORMAL in WAL is durable across process crashes (the 202 promise); only an OS
        # crash or power loss can drop the last transactions.
        for pragma in ("busy_timeout = 5000", "synchronous = NORMAL", "foreign_keys = ON"):
            await conn.execute(f"PRAGMA {pragma}")
        if self.max_db_mb > 0:
            # per connection, not stored in the file; a write past it fails with SQLITE_FULL, which the
            # writer turns into StorageFull (507). Below the file's current size it means "no growth".
            async with conn.execute("PRAGMA page_size") as cur:
                row = await cur.fetchone()
            page_size = row[0] if row else 4096
            pages = max(1, self.max_db_mb * 1024 * 1024 // page_size)
            # it answers with a row: read it, or the open statement holds a read transaction
            async with conn.execute(f"PRAGMA max_page_count = {pages}") as cur:
                await cur.fetchall()
        return conn

    def _full_message(self) -> str | None:
        if self.max_db_mb <= 0:
            return None
        return (
            f"the database is full (store.max_db_mb = {self.max_db_mb}) or its disk is; nothing was stored. "
            "Retry once space is freed: finished jobs are deleted store.retention_s after they end"
        )

    @staticmethod
    async def _migrate(conn: aiosqlite.Connection) -> None:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            async with conn.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            version = row[0] if row else 0
            if version > len(MIGRATIONS):
                raise RuntimeError(f"database schema version {version} is newer than this litejobs ({len(MIGRATIONS)})")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {number}")
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise

    async def _write(self, op: Any) -> Any:
        assert self._writer is not None, "store is not open"
        return await self._writer.run(op)

    async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        assert self._read_conn is not None, "store is not open"
        # One hop that steps the statement to its end and resets it. As execute, fetchall and close
        # hops, reads of concurrent requests interleave, some statement of the connection is always
        # open, and its read transaction (its WAL snapshot) never ends: a job committed before its
        # 202 could answer 404 to the GET that follows.
        return await self._read_conn._execute(_read_rows, self._read_conn._conn, sql, params)  # type: ignore[no-any-return]

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
                depth = self._queue_depth(conn, fresh, max_depth)
                if depth > max_depth:
                    raise QueueFull(f"the queue holds {depth - fresh} jobs (queue.max_depth = {max_depth})")
            return out

        return await self._write(op)

    def _queue_depth(self, conn: sqlite3.Connection, fresh: int, max_depth: int) -> int:
        """Waiting + delayed jobs, this submit's included. Counting costs time linear in the queue,
        so while the last count plus every submit since stays well under max_depth (claims only
        lower it) the estimate serves; an exact count is taken near the limit and every second."""
        counted, at, since = self._depth_seen
        estimate = counted + since + fresh
        if estimate < max_depth * 0.9 and time.monotonic() - at < 1.0:
            self._depth_seen = (counted, at, since + fresh)
            return estimate
        # one sub-count per partial index: `status IN (...)` would scan the whole table
        (depth,) = conn.execute(
            "SELECT (SELECT count(*) FROM jobs WHERE status = 'waiting') + "
            "(SELECT count(*) FROM jobs WHERE status = 'delayed')"
        ).fetchone()
        self._depth_seen = (depth, time.monotonic(), 0)
        return int(depth)

    @staticmethod
    def _find_replay(conn: sqlite3.Connection, spec: JobSpec) -> Job | None:
        if spec.idempotency_key is None:
            return None
        row = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE owner = ? AND idempotency_key = ?",
            (spec.owner, spec.idempotency_key),
        ).fetchone()
        if row is None:
            return None
        if row["request_hash"] != spec.request_hash:
            raise IdempotencyConflict()
        return _job(row)

    @staticmethod
    def _insert(conn: sqlite3.Connection, spec: JobSpec, now_ms: int) -> Job:
        run_at = now_ms + int(spec.delay_s * 1000)
        status = JobState.DELAYED if spec.delay_s > 0 else JobState.WAITING
        job_id = new_job_id()
        conn.execute(
            "INSERT INTO jobs (id, kind, owner, status, priority, run_at, input, meta, webhook, "
            "max_attempts, timeout_s, idempotency_key, request_hash, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id, spec.kind, spec.owner, status.value, spec.priority, run_at,
                _dumps(spec.input), _dumps(spec.meta),
                None if spec.webhook is None else _dumps(spec.webhook),
                spec.max_attempts, spec.timeout_s, spec.idempotency_key, spec.request_hash,
                now_ms, now_ms,
            ),
        )  # fmt: skip
        job = _fetch_job(conn, job_id)
        assert job is not None
        return job

    async def get(self, job_id: str) -> Job | None:
        rows = await self._read(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

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
            f"SELECT {_JOB_COLUMNS} FROM jobs {clause} ORDER BY seq DESC LIMIT ?", (*params, limit + 1)
        )
        jobs = [_job(r) for r in rows[:limit]]
        next_cursor = rows[limit - 1]["seq"] if len(rows) > limit else None
        return jobs, next_cursor

    # --- the worker's side -------------------------------------------------------------------

    async def claim(self, limit: int, worker_id: str, now_ms: int, lease_ms: int, *, idle: bool = True) -> list[Job]:
        def op(conn: sqlite3.Connection) -> list[Job]:
            conn.execute(
                "UPDATE jobs SET status = 'waiting', updated_at = ? WHERE status = 'delayed' AND run_at <= ?",
                (now_ms, now_ms),
            )
            candidates = conn.execute(
                "SELECT seq, recoveries FROM jobs WHERE status = 'waiting' ORDER BY priority DESC, run_at, seq LIMIT ?",
                (limit,),
            ).fetchall()
            chosen = _claimable(candidates, idle)
            if not chosen:
                return []
            rows = conn.execute(
                "UPDATE jobs SET status = 'active', attempts = attempts + 1, lease_until = ?, "
                "lease_owner = ?, started_at = COALESCE(started_at, ?), updated_at = ?, progress = NULL "
                f"WHERE seq IN ({','.join('?' * len(chosen))}) AND status = 'waiting' "
                f"RETURNING {_JOB_COLUMNS}",
                (now_ms + lease_ms, worker_id, now_ms, now_ms, *chosen),
            ).fetchall()
            jobs = sorted((_job(r) for r in rows), key=lambda j: (-j.priority, j.run_at))
            conn.executemany(
                "INSERT OR REPLACE INTO attempts (job_id, number, started_at) VALUES (?, ?, ?)",
                [(j.id, j.attempts, now_ms) for j in jobs],
            )
            return jobs

        return await self._write(op)

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
                f"WHERE id = ? AND status = 'active' AND lease_owner = ? RETURNING {_JOB_COLUMNS}",
                (result.status.value, now_ms, now_ms, expires_at_ms, job_id, worker_id),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "INSERT OR REPLACE INTO results (job_id, outputs, stats) VALUES (?, ?, ?)",
                (job_id, _dumps(result.outputs), _dumps(result.stats)),
            )
            _end_attempt(conn, job_id, now_ms, result.status.value, None)
            return _job(row)

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
                params: tuple[Any, ...] = (_dumps(error), now_ms, now_ms, expires_at_ms, job_id, worker_id)
            else:
                sql = (
                    "UPDATE jobs SET status = 'delayed', error = ?, run_at = ?, updated_at = ?, "
                    "lease_until = NULL WHERE id = ? AND status = 'active' AND lease_owner = ?"
                )
                params = (_dumps(error), retry_at_ms, now_ms, job_id, worker_id)
            row = conn.execute(f"{sql} RETURNING {_JOB_COLUMNS}", params).fetchone()
            if row is None:
                return None
            _end_attempt(conn, job_id, now_ms, "failed" if retry_at_ms is None else "retry", error)
            return _job(row)

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
                    conn.execute("DELETE FROM attempts WHERE job_id = ? AND ended_at IS NULL", (job_id,))

        await self._write(op)

    async def set_progress(self, job_id: str, progress: dict[str, Any], now_ms: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND status = 'active'",
                (_dumps(progress), now_ms, job_id),
            )

        await self._write(op)

    # --- the owner's side --------------------------------------------------------------------

    async def cancel(self, job_id: str, now_ms: int, expires_at_ms: int) -> tuple[Job, JobState]:
        def op(conn: sqlite3.Connection) -> tuple[Job, JobState]:
            job = _fetch_job(conn, job_id)
            if job is None:
                raise NotFound()
            if job.is_terminal:
                raise JobFinished(f"the job is already {job.status.value}")
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', completed_at = ?, updated_at = ?, expires_at = ?, "
                f"lease_until = NULL WHERE id = ? AND status IN {_guarded_status(JobState.CANCELLED)}",
                (now_ms, now_ms, expires_at_ms, job_id),
            )
            _end_attempt(conn, job_id, now_ms, "cancelled", None)
            updated = _fetch_job(conn, job_id)
            assert updated is not None
            return updated, job.status

        return await self._write(op)

    async def retry(self, job_id: str, now_ms: int) -> Job:
        def op(conn: sqlite3.Connection) -> Job:
            job = _fetch_job(conn, job_id)
            if job is None:
                raise NotFound()
            if job.status not in (JobState.FAILED, JobState.CANCELLED):
                raise JobFinished(f"only failed or cancelled jobs can be retried; this one is {job.status.value}")
            conn.execute(
                "UPDATE jobs SET status = 'waiting', attempts = 0, recoveries = 0, run_at = ?, updated_at = ?, "
                "completed_at = NULL, expires_at = NULL, error = NULL, progress = NULL, result_available = 0 "
                f"WHERE id = ? AND status IN {_guarded_status(JobState.WAITING)}",
                (now_ms, now_ms, job_id),
            )
            conn.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM pages WHERE job_id = ?", (job_id,))
            updated = _fetch_job(conn, job_id)
            assert updated is not None
            return updated

        return await self._write(op)

    # --- housekeeping ------------------------------------------------------------------------

    async def recover_expired(
        self, now_ms: int, max_recoveries: int, dead_owners: list[str] | None = None
    ) -> Recovered:
        dead = dead_owners or []

        def op(conn: sqlite3.Connection) -> Recovered:
            marks = ",".join("?" * len(dead))
            owner_clause = f" OR lease_owner IN ({marks})" if dead else ""
            rows = conn.execute(
                f"SELECT id, attempts, max_attempts, recoveries FROM jobs WHERE status = 'active' "
                f"AND (lease_until < ?{owner_clause})",
                (now_ms, *dead),
            ).fetchall()
            recovered = Recovered([], [])
            for row in rows:
                self._recover_one(conn, row, now_ms, max_recoveries, recovered)
            return recovered

        return await self._write(op)

    @staticmethod
    def _recover_one(
        conn: sqlite3.Connection, row: sqlite3.Row, now_ms: int, max_recoveries: int, out: Recovered
    ) -> None:
        recoveries = row["recoveries"] + 1
        if recoveries > max_recoveries:
            error = {"code": "poisoned", "message": f"the worker died {recoveries} times running this job"}
        elif row["attempts"] >= row["max_attempts"]:
            error = {"code": "worker_lost", "message": "the worker running this job died; no attempts remain"}
        else:
            conn.execute(
                "UPDATE jobs SET status = 'waiting', recoveries = ?, lease_until = NULL, lease_owner = NULL, "
                "updated_at = ? WHERE id = ? AND status = 'active'",
                (recoveries, now_ms, row["id"]),
            )
            _end_attempt(conn, row["id"], now_ms, "lost", {"code": "worker_lost", "message": "worker died"})
            out.requeued.append(row["id"])
            return
        conn.execute(
            "UPDATE jobs SET status = 'failed', recoveries = ?, error = ?, completed_at = ?, updated_at = ?, "
            "expires_at = ?, lease_until = NULL WHERE id = ? AND status = 'active'",
            (recoveries, _dumps(error), now_ms, now_ms, now_ms, row["id"]),
        )
        _end_attempt(conn, row["id"], now_ms, "lost", error)
        out.failed.append(row["id"])

    async def sweep_expired(self, now_ms: int, limit: int) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE expires_at <= ? LIMIT ?) RETURNING id",
                (now_ms, limit),
            ).fetchall()
            return [r["id"] for r in rows]

        return await self._write(op)

    async def next_run_at(self) -> int | None:
        rows = await self._read("SELECT min(run_at) FROM jobs WHERE status = 'delayed'")
        return rows[0][0] if rows else None

    async def get_result(self, job_id: str) -> JobResult | None:
        rows = await self._read(
            "SELECT j.status, r.outputs, r.stats FROM results r JOIN jobs j ON j.id = r.job_id WHERE r.job_id = ?",
            (job_id,),
        )
        if not rows:
            return None
        return JobResult(JobState(rows[0]["status"]), json.loads(rows[0]["outputs"]), json.loads(rows[0]["stats"]))

    async def attempts(self, job_id: str) -> list[Attempt]:
        rows = await self._read(
            "SELECT number, started_at, ended_at, outcome, error FROM attempts WHERE job_id = ? ORDER BY number",
            (job_id,),
        )
        return [Attempt(r["number"], r["started_at"], r["ended_at"], r["outcome"], _loads(r["error"])) for r in rows]

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
                [(job_id, start + i, page["url"], _dumps(page)) for i, page in enumerate(pages)],
            )

        await self._write(op)

    async def pages(self, job_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT data FROM pages WHERE job_id = ? AND seq >= ? ORDER BY seq LIMIT ?", (job_id, offset, limit)
        )
        return [json.loads(r[0]) for r in rows]

    async def page_count(self, job_id: str) -> int:
        rows = await self._read("SELECT count(*) FROM pages WHERE job_id = ?", (job_id,))
        return int(rows[0][0])

    async def page_urls(self, job_id: str) -> list[str]:
        rows = await self._read("SELECT url FROM pages WHERE job_id = ? ORDER BY seq", (job_id,))
        return [r[0] for r in rows]

    async def changed_since(self, owner: str, since_ms: int, limit: int) -> list[Job]:
        """The owner's jobs updated at or after `since_ms`, oldest change first (event-stream resume)."""
        rows = await self._read(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE owner = ? AND updated_at >= ? ORDER BY updated_at, seq LIMIT ?",
            (owner, since_ms, limit),
        )
        return [_job(r) for r in rows]

    async def active_owners(self) -> list[str]:
        rows = await self._read("SELECT DISTINCT lease_owner FROM jobs WHERE status = 'active'")
        return [r[0] for r in rows if r[0]]

    async def stats(self, now_ms: int) -> dict[str, Any]:
        counts = {state.value: 0 for state in JobState}
        for row in await self._read("SELECT status, count(*) FROM jobs GROUP BY status"):
            counts[row[0]] = row[1]
        oldest = await self._read("SELECT min(run_at) FROM jobs WHERE status = 'waiting'")
        oldest_ms = oldest[0][0] if oldest else None
        return {
            "counts": counts,
            "queue_depth": counts["waiting"] + counts["delayed"],
            "oldest_waiting_age_s": None if oldest_ms is None else max(0.0, (now_ms - oldest_ms) / 1000),
        }

    async def counts_by_status_kind(self) -> dict[tuple[str, str], int]:
        rows = await self._read("SELECT status, kind, count(*) FROM jobs GROUP BY status, kind")
        return {(r[0], r[1]): r[2] for r in rows}
