"""The housekeeping half of PostgresStore: recovering dead nodes' jobs, and the expiry sweep."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from litejobs.jobs import Job, recovery_error
from litejobs.store import Change, Recovered
from litejobs.store.postgres_records import dumps, end_attempt, notify_work
from litejobs.store.postgres_schema import SWEEP_LOCK
from litejobs.store.rows import JOB_COLUMNS, NO_PENDING_DELIVERY, job_of_row


class Housekeeping:
    """Mixed into PostgresStore."""

    if TYPE_CHECKING:
        _pool: Any

        def _changed(self, jobs: Iterable[tuple[str, str]]) -> None: ...

    async def recover_expired(
        self, now_ms: int, max_recoveries: int, dead_owners: list[str] | None = None, *, retention_ms: int
    ) -> Recovered:
        """Any node recovers any node's expired leases; rows another node is recovering are skipped."""
        recovered = Recovered([], [])
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, owner, attempts, max_attempts, recoveries FROM jobs WHERE status = 'active' "
                "AND (lease_until < $1 OR lease_owner = ANY($2::text[])) FOR UPDATE SKIP LOCKED",
                now_ms,
                dead_owners or [],
            )
            for row in rows:
                await self._recover_one(conn, row, now_ms, max_recoveries, recovered, now_ms + retention_ms)
            if recovered.requeued:
                await notify_work(conn)
        self._changed((row["id"], row["owner"]) for row in rows)
        return recovered

    @staticmethod
    async def _recover_one(
        conn: Any, row: Any, now_ms: int, max_recoveries: int, out: Recovered, expires_at_ms: int
    ) -> None:
        recoveries = row["recoveries"] + 1
        error = recovery_error(recoveries, row["attempts"], row["max_attempts"], max_recoveries)
        if error is None:
            changed = await conn.fetchrow(
                "UPDATE jobs SET status = 'waiting', recoveries = $1, lease_until = NULL, lease_owner = NULL, "
                f"updated_at = $2 WHERE id = $3 AND status = 'active' RETURNING {JOB_COLUMNS}",
                recoveries,
                now_ms,
                row["id"],
            )
            await end_attempt(conn, row["id"], now_ms, "lost", {"code": "worker_lost", "message": "worker died"})
            out.requeued.append(row["id"])
        else:
            changed = await conn.fetchrow(
                "UPDATE jobs SET status = 'failed', recoveries = $1, error = $2, completed_at = $3, updated_at = $3, "
                f"expires_at = $5, lease_until = NULL WHERE id = $4 AND status = 'active' RETURNING {JOB_COLUMNS}",
                recoveries,
                dumps(error),
                now_ms,
                row["id"],
                expires_at_ms,
            )
            await end_attempt(conn, row["id"], now_ms, "lost", error)
            out.failed.append(row["id"])
        if changed is not None:
            out.jobs.append(job_of_row(changed))

    async def changes_after(self, owner: str, after_ms: int, after_seq: int, limit: int) -> list[Change]:
        """A keyset page of the owner's changes (event streams); `updated_at >= $2` lets the
        (owner, updated_at) index find the start."""
        rows = await self._pool.fetch(
            "SELECT seq, id, updated_at, status FROM jobs WHERE owner = $1 AND updated_at >= $2 "
            "AND (updated_at > $2 OR seq > $3) ORDER BY updated_at, seq LIMIT $4",
            owner,
            after_ms,
            after_seq,
            limit,
        )
        return [Change(*r) for r in rows]

    async def jobs_by_seq(self, seqs: list[int]) -> dict[int, Job]:
        rows = await self._pool.fetch(f"SELECT {JOB_COLUMNS} FROM jobs WHERE seq = ANY($1::bigint[])", seqs)
        return {r[0]: job_of_row(r) for r in rows}

    async def sweep_expired(self, now_ms: int, limit: int) -> list[str]:
        """One node sweeps at a time: the others find the advisory lock taken and sweep nothing. A job
        whose webhook is still being delivered stays until the delivery ends (as on SQLite)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK):
                return []
            rows = await conn.fetch(
                "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs j WHERE expires_at <= $1 "
                f"AND {NO_PENDING_DELIVERY} LIMIT $2) RETURNING id",
                now_ms,
                limit,
            )
            return [r["id"] for r in rows]
