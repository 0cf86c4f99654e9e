"""PostgresStore: the store for several litejobs nodes sharing one PostgreSQL database (asyncpg).

Same contract as SqliteStore: every state change is decided by one statement guarded by the job's
current state. What changes with many nodes: claims take rows `FOR UPDATE SKIP LOCKED`, so nodes
never wait on each other's claims; a node that makes work claimable raises NOTIFY, and every node's
listener wakes its workers; every job change is announced after its commit (postgres_notices), so
other nodes' long-polls and event streams wake; the schema is migrated, and the expiry sweep run,
by one node at a time under an advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from litejobs.errors import IdempotencyConflict, JobFinished, JobNotRetryable, NotFound, QueueFull
from litejobs.jobs import TERMINAL, Job, JobResult, JobSpec, JobState, new_job_id
from litejobs.store import StoreUnavailable, Submitted
from litejobs.store.postgres_claims import CLAIM, PROMOTE, PROMOTE_BATCH
from litejobs.store.postgres_hosts import HostSlots
from litejobs.store.postgres_housekeeping import Housekeeping
from litejobs.store.postgres_listen import Listener, Notices
from litejobs.store.postgres_notices import ChangeNotices
from litejobs.store.postgres_pool import COMMAND_TIMEOUT_S, CONNECT_TIMEOUT_S, open_pool, shown_url
from litejobs.store.postgres_records import Records, dumps, end_attempt, job_of, notify_work
from litejobs.store.postgres_schema import migrate
from litejobs.store.postgres_webhooks import WebhookDeliveries
from litejobs.store.rows import CANCELLED_RESULT, JOB_COLUMNS, guarded_status

try:
    import asyncpg
except ImportError:  # pragma: no cover - the optional extra
    asyncpg = None

log = logging.getLogger("litejobs.store")


#: connections per node: the workers' claims and outcomes, heartbeats, the API's reads
POOL_SIZE = 16


class PostgresStore(Records, Housekeeping, WebhookDeliveries, HostSlots, Notices):
    """A connection pool for statements, and one more connection that LISTENs for other nodes'
    notices: new work, job changes, and released host slots."""

    def _notice_handlers(self) -> dict[str, Callable[[str], None]]:
        return {**Notices._notice_handlers(self), **self._host_notice_handlers()}

    def __init__(
        self, url: str, *, pool_size: int = POOL_SIZE, command_timeout_s: float | None = COMMAND_TIMEOUT_S
    ) -> None:
        if asyncpg is None:
            raise RuntimeError("store.url names PostgreSQL, which needs asyncpg: pip install 'litejobs[postgres]'")
        self.url = url
        self.pool_size = pool_size
        self.command_timeout_s = command_timeout_s
        self._pool: Any = None  # a BoundedPool once open
        self._listener: Listener | None = None
        self._wake_callbacks: list[Callable[[], None]] = []
        self._change_callbacks: list[Callable[[str, str], None]] = []
        self._resync_callbacks: list[Callable[[], None]] = []
        self.node_id = secrets.token_hex(6)
        self._notices = ChangeNotices(self.node_id)
        #: (queue depth when last counted, monotonic time of that count, jobs submitted since)
        self._depth_seen: tuple[int, float, int] = (0, -1e9, 0)

    async def __aenter__(self) -> PostgresStore:
        try:
            # a connection of its own, free of the pool's statement timeout: a migration may take long
            conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            self._pool = await open_pool(self.url, self.pool_size, self.command_timeout_s)
            self._notices.start(self._pool)
            self._listener = await Listener(self.url, self._notice_handlers(), self._on_reconnect).__aenter__()
        except BaseException as exc:
            await self.__aexit__(None, None, None)
            # refused, unknown database or role, bad password, a newer schema (RuntimeError)
            if isinstance(exc, (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError)):
                raise StoreUnavailable.opening(shown_url(self.url), exc) from exc
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._notices.stop()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener.__aexit__(None, None, None), 10)
            self._listener = None
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 10)
            self._pool = None

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        assert self._pool is not None, "store is not open"
        return await self._pool.fetch(sql, *args)

    async def ping(self) -> bool:
        """Whether the database answers now, within a short time (the readiness probe)."""
        return self._pool is not None and await self._pool.ping()

    def unreachable_within(self, seconds: float) -> bool:
        """Whether a statement found the database unreachable in the last `seconds`."""
        at = None if self._pool is None else self._pool.unreachable_at
        return at is not None and time.monotonic() - at < seconds

    def _changed(self, jobs: Iterable[tuple[str, str]]) -> None:
        """Tell other nodes these (job_id, owner) changed; only once their transaction committed,
        so that a node woken by the notice reads the change."""
        self._notices.changed(jobs)

    def _announce(self, jobs: list[Job]) -> list[Job]:
        self._changed((job.id, job.owner) for job in jobs)
        return jobs

    # --- submit and read ---------------------------------------------------------------------

    async def submit(self, specs: list[JobSpec], now_ms: int, max_depth: int) -> list[Submitted]:
        async with self._pool.acquire() as conn, conn.transaction():
            out: list[Submitted] = []
            fresh = 0
            for spec in specs:
                job = await self._insert(conn, spec, now_ms)
                if job is None:  # the key is taken: by an equal request (replay) or not (conflict)
                    out.append(Submitted(await self._replay(conn, spec), True))
                    continue
                fresh += 1
                out.append(Submitted(job, False))
            if fresh:
                depth = await self._queue_depth(conn, fresh, max_depth)
                if depth > max_depth:
                    raise QueueFull(f"the queue holds {depth - fresh} jobs (queue.max_depth = {max_depth})")
                await notify_work(conn)
        self._announce([s.job for s in out if not s.replayed])
        return out

    async def _queue_depth(self, conn: Any, fresh: int, max_depth: int) -> int:
        """Waiting + delayed jobs, this submit's included; estimated like SqliteStore does while far
        from max_depth. With several nodes each counts on its own, so the limit is approximate by
        at most what the other nodes accept within a second."""
        counted, at, since = self._depth_seen
        estimate = counted + since + fresh
        if estimate < max_depth * 0.9 and time.monotonic() - at < 1.0:
            self._depth_seen = (counted, at, since + fresh)
            return estimate
        depth = await conn.fetchval(
            "SELECT (SELECT count(*) FROM jobs WHERE status = 'waiting') + "
            "(SELECT count(*) FROM jobs WHERE status = 'delayed')"
        )
        self._depth_seen = (int(depth), time.monotonic(), 0)
        return int(depth)

    @staticmethod
    async def _insert(conn: Any, spec: JobSpec, now_ms: int) -> Job | None:
        """The new job, or None when (owner, idempotency key) is taken. ON CONFLICT waits for a
        concurrent insert of the same key on another node to commit, so exactly one job wins."""
        status = JobState.DELAYED if spec.delay_s > 0 else JobState.WAITING
        row = await conn.fetchrow(
            "INSERT INTO jobs (id, kind, owner, status, priority, run_at, input, meta, webhook, "
            "max_attempts, timeout_s, idempotency_key, request_hash, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) "
            "ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
            f"RETURNING {JOB_COLUMNS}",
            new_job_id(), spec.kind, spec.owner, status.value, spec.priority,
            now_ms + int(spec.delay_s * 1000), dumps(spec.input), dumps(spec.meta),
            None if spec.webhook is None else dumps(spec.webhook),
            spec.max_attempts, float(spec.timeout_s), spec.idempotency_key, spec.request_hash, now_ms,
        )  # fmt: skip
        return None if row is None else job_of(row)

    @staticmethod
    async def _replay(conn: Any, spec: JobSpec) -> Job:
        row = await conn.fetchrow(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE owner = $1 AND idempotency_key = $2",
            spec.owner,
            spec.idempotency_key,
        )
        if row is None or row["request_hash"] != spec.request_hash:
            raise IdempotencyConflict()
        return job_of(row)

    async def get(self, job_id: str) -> Job | None:
        rows = await self._fetch(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1", job_id)
        return job_of(rows[0]) if rows else None

    async def list_jobs(
        self, owner: str | None, status: str | None, kind: str | None, limit: int, before_seq: int | None
    ) -> tuple[list[Job], int | None]:
        where: list[str] = []
        params: list[Any] = []
        for condition, value in (("owner =", owner), ("status =", status), ("kind =", kind), ("seq <", before_seq)):
            if value is not None:
                params.append(value)
                where.append(f"{condition} ${len(params)}")
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = await self._fetch(
            f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY seq DESC LIMIT ${len(params) + 1}", *params, limit + 1
        )
        jobs = [job_of(r) for r in rows[:limit]]
        next_cursor = rows[limit - 1]["seq"] if len(rows) > limit else None
        return jobs, next_cursor

    # --- the worker's side -------------------------------------------------------------------

    async def claim(
        self, limit: int, worker_id: str, now_ms: int, lease_ms: int, *, idle: bool = True, promote: bool = True
    ) -> list[Job]:
        """`promote=False`: the caller promotes due jobs itself (promote_due), and announces them."""
        async with self._pool.acquire() as conn:
            if promote:  # due delayed jobs become waiting first
                self._announce([job_of(r) for r in await conn.fetch(PROMOTE, now_ms, PROMOTE_BATCH)])
            rows = await conn.fetch(CLAIM, limit, now_ms + lease_ms, worker_id, now_ms, idle)
        claimed = [job_of(r) for r in rows]
        self._announce(claimed)
        return claimed

    async def promote_due(self, now_ms: int, limit: int) -> list[Job]:
        """As SqliteStore.promote_due; the other nodes' workers are woken to claim them."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(PROMOTE, now_ms, limit)
            if rows:
                await notify_work(conn)
        return self._announce([job_of(r) for r in rows])

    async def heartbeat(self, job_ids: list[str], worker_id: str, lease_until_ms: int) -> set[str]:
        if not job_ids:
            return set()
        rows = await self._fetch(
            "UPDATE jobs SET lease_until = $1 WHERE id = ANY($2::text[]) AND status = 'active' "
            "AND lease_owner = $3 RETURNING id",
            lease_until_ms,
            job_ids,
            worker_id,
        )
        return {r["id"] for r in rows}

    async def finish(
        self, job_id: str, worker_id: str, result: JobResult, now_ms: int, expires_at_ms: int
    ) -> Job | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE jobs SET status = $1, result_available = true, completed_at = $2, updated_at = $2, "
                "expires_at = $3, lease_until = NULL, error = NULL "
                f"WHERE id = $4 AND status = 'active' AND lease_owner = $5 RETURNING {JOB_COLUMNS}",
                result.status.value, now_ms, expires_at_ms, job_id, worker_id,
            )  # fmt: skip
            if row is None:
                return None
            await conn.execute(
                "INSERT INTO results (job_id, outputs, stats) VALUES ($1, $2, $3) "
                "ON CONFLICT (job_id) DO UPDATE SET outputs = EXCLUDED.outputs, stats = EXCLUDED.stats",
                job_id,
                dumps(result.outputs),
                dumps(result.stats),
            )
            await end_attempt(conn, job_id, now_ms, result.status.value, None)
        return self._announce([job_of(row)])[0]

    async def fail(
        self,
        job_id: str,
        worker_id: str,
        error: dict[str, Any],
        retry_at_ms: int | None,
        now_ms: int,
        expires_at_ms: int,
    ) -> Job | None:
        if retry_at_ms is None:
            sql = (
                "UPDATE jobs SET status = 'failed', error = $1, completed_at = $2, updated_at = $2, "
                "expires_at = $3, lease_until = NULL WHERE id = $4 AND status = 'active' AND lease_owner = $5"
            )
            params: tuple[Any, ...] = (dumps(error), now_ms, expires_at_ms, job_id, worker_id)
        else:
            sql = (
                "UPDATE jobs SET status = 'delayed', error = $1, run_at = $2, updated_at = $3, "
                "lease_until = NULL WHERE id = $4 AND status = 'active' AND lease_owner = $5"
            )
            params = (dumps(error), retry_at_ms, now_ms, job_id, worker_id)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"{sql} RETURNING {JOB_COLUMNS}", *params)
            if row is None:
                return None
            await end_attempt(conn, job_id, now_ms, "failed" if retry_at_ms is None else "retry", error)
        return self._announce([job_of(row)])[0]

    async def release(self, job_ids: list[str], worker_id: str, now_ms: int) -> None:
        if not job_ids:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE jobs SET status = 'waiting', attempts = attempts - 1, lease_until = NULL, "
                "lease_owner = NULL, updated_at = $1 WHERE id = ANY($2::text[]) AND status = 'active' "
                "AND lease_owner = $3 RETURNING id, owner",
                now_ms,
                job_ids,
                worker_id,
            )
            released = [r["id"] for r in rows]
            if released:
                await conn.execute("DELETE FROM attempts WHERE job_id = ANY($1::text[]) AND ended_at IS NULL", released)
                await notify_work(conn)
        self._changed((r["id"], r["owner"]) for r in rows)

    async def set_progress(self, job_id: str, progress: dict[str, Any], now_ms: int) -> None:
        rows = await self._fetch(
            "UPDATE jobs SET progress = $1, updated_at = $2 WHERE id = $3 AND status = 'active' RETURNING owner",
            dumps(progress),
            now_ms,
            job_id,
        )
        self._changed((job_id, r["owner"]) for r in rows)

    # --- the owner's side --------------------------------------------------------------------

    async def cancel(self, job_id: str, now_ms: int, expires_at_ms: int) -> tuple[Job, JobState]:
        async with self._pool.acquire() as conn, conn.transaction():
            # the row lock holds the status still between reading it and the guarded update
            was = await conn.fetchval("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", job_id)
            if was is None:
                raise NotFound()
            if JobState(was) in TERMINAL:
                raise JobFinished(f"the job is already {was}")
            row = await conn.fetchrow(
                "UPDATE jobs SET status = 'cancelled', completed_at = $1, updated_at = $1, expires_at = $2, "
                f"lease_until = NULL, {CANCELLED_RESULT} "
                f"WHERE id = $3 AND status IN {guarded_status(JobState.CANCELLED)} "
                f"RETURNING {JOB_COLUMNS}",
                now_ms,
                expires_at_ms,
                job_id,
            )
            await end_attempt(conn, job_id, now_ms, "cancelled", None)
        return self._announce([job_of(row)])[0], JobState(was)

    async def retry(self, job_id: str, now_ms: int, max_depth: int) -> Job:
        async with self._pool.acquire() as conn, conn.transaction():
            was = await conn.fetchval("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", job_id)
            if was is None:
                raise NotFound()
            if JobState(was) not in (JobState.FAILED, JobState.CANCELLED):
                raise JobNotRetryable.because(was)
            # started_at goes too: the next claim sets it, so the new run's duration is its own
            row = await conn.fetchrow(
                "UPDATE jobs SET status = 'waiting', attempts = 0, recoveries = 0, run_at = $1, updated_at = $1, "
                "started_at = NULL, completed_at = NULL, expires_at = NULL, error = NULL, progress = NULL, "
                f"result_available = false WHERE id = $2 AND status IN {guarded_status(JobState.WAITING)} "
                f"RETURNING {JOB_COLUMNS}",
                now_ms,
                job_id,
            )
            # the job joins the queue as one submit would; the transaction is rolled back if it raises
            depth = await self._queue_depth(conn, 1, max_depth)
            if depth > max_depth:
                raise QueueFull(f"the queue holds {depth - 1} jobs (queue.max_depth = {max_depth})")
            await conn.execute("DELETE FROM results WHERE job_id = $1", job_id)
            await conn.execute("DELETE FROM pages WHERE job_id = $1", job_id)
            await notify_work(conn)
        return self._announce([job_of(row)])[0]
