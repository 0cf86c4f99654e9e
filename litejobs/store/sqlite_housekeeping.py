"""The housekeeping half of SqliteStore: recovering dead workers' jobs, the expiry sweep, figures."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from litejobs.jobs import Job, recovery_error
from litejobs.store import Change, Recovered
from litejobs.store.rows import NO_PENDING_DELIVERY, stats_of
from litejobs.store.sqlite_rows import JOB_COLUMNS, dumps, end_attempt, job_of_row


class Housekeeping:
    """Mixed into SqliteStore."""

    if TYPE_CHECKING:

        async def _write(self, op: Callable[[sqlite3.Connection], Any]) -> Any: ...

        async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]: ...

    async def recover_expired(
        self, now_ms: int, max_recoveries: int, dead_owners: list[str] | None = None, *, retention_ms: int
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
                self._recover_one(conn, row, now_ms, max_recoveries, recovered, now_ms + retention_ms)
            return recovered

        return await self._write(op)

    async def sweep_expired(self, now_ms: int, limit: int) -> list[str]:
        """Not a job whose webhook is still being delivered: its rows go with the job (a cascade),
        and its terminal webhook would be lost. It goes at the first sweep after the delivery ends."""

        def op(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs j WHERE expires_at <= ? "
                f"AND {NO_PENDING_DELIVERY} LIMIT ?) RETURNING id",
                (now_ms, limit),
            ).fetchall()
            return [r["id"] for r in rows]

        return await self._write(op)

    async def next_run_at(self) -> int | None:
        rows = await self._read("SELECT min(run_at) FROM jobs WHERE status = 'delayed'")
        return rows[0][0] if rows else None

    async def changes_after(self, owner: str, after_ms: int, after_seq: int, limit: int) -> list[Change]:
        """A keyset page of the owner's changes (event streams): `updated_at >= ?` first, so the
        (owner, updated_at) index, which holds seq as the rowid, finds the start."""
        rows = await self._read(
            "SELECT seq, id, updated_at, status FROM jobs WHERE owner = ? AND updated_at >= ? "
            "AND (updated_at > ? OR seq > ?) ORDER BY updated_at, seq LIMIT ?",
            (owner, after_ms, after_ms, after_seq, limit),
        )
        return [Change(*r) for r in rows]

    async def jobs_by_seq(self, seqs: list[int]) -> dict[int, Job]:
        # one statement whatever the count (a JSON array), so sqlite3's statement cache keeps it
        rows = await self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE seq IN (SELECT value FROM json_each(?))", (dumps(seqs),)
        )
        return {r[0]: job_of_row(r) for r in rows}

    async def active_owners(self) -> list[str]:
        rows = await self._read("SELECT DISTINCT lease_owner FROM jobs WHERE status = 'active'")
        return [r[0] for r in rows if r[0]]

    async def stats(self, now_ms: int) -> dict[str, Any]:
        by_status = await self._read("SELECT status, count(*) FROM jobs GROUP BY status")
        oldest = await self._read("SELECT min(run_at) FROM jobs WHERE status = 'waiting'")
        return stats_of([(r[0], r[1]) for r in by_status], oldest[0][0] if oldest else None, now_ms)

    async def counts_by_status_kind(self) -> dict[tuple[str, str], int]:
        rows = await self._read("SELECT status, kind, count(*) FROM jobs GROUP BY status, kind")
        return {(r[0], r[1]): r[2] for r in rows}

    @staticmethod
    def _recover_one(
        conn: sqlite3.Connection,
        row: sqlite3.Row,
        now_ms: int,
        max_recoveries: int,
        out: Recovered,
        expires_at_ms: int,
    ) -> None:
        recoveries = row["recoveries"] + 1
        error = recovery_error(recoveries, row["attempts"], row["max_attempts"], max_recoveries)
        if error is None:
            changed = conn.execute(
                "UPDATE jobs SET status = 'waiting', recoveries = ?, lease_until = NULL, lease_owner = NULL, "
                f"updated_at = ? WHERE id = ? AND status = 'active' RETURNING {JOB_COLUMNS}",
                (recoveries, now_ms, row["id"]),
            ).fetchone()
            end_attempt(conn, row["id"], now_ms, "lost", {"code": "worker_lost", "message": "worker died"})
            out.requeued.append(row["id"])
        else:
            changed = conn.execute(
                "UPDATE jobs SET status = 'failed', recoveries = ?, error = ?, completed_at = ?, updated_at = ?, "
                f"expires_at = ?, lease_until = NULL WHERE id = ? AND status = 'active' RETURNING {JOB_COLUMNS}",
                (recoveries, dumps(error), now_ms, now_ms, expires_at_ms, row["id"]),
            ).fetchone()
            end_attempt(conn, row["id"], now_ms, "lost", error)
            out.failed.append(row["id"])
        if changed is not None:
            out.jobs.append(job_of_row(changed))
