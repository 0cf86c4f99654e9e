"""The webhook-delivery half of SqliteStore: the SQL of the webhook_deliveries table (migration 3)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from litejobs.store import Delivery
from litejobs.store.rows import DELIVERY_COLUMNS, delivery_of_row, new_delivery_id

#: The receiver of a delivery: its URL up to the path (scheme and authority), lower-cased; the same
#: expression as webhooks.receiver_of, so that the claim's turns and the sender's caps agree
RECEIVER = "lower(substr(url, 1, instr(substr(url, 9) || '/', '/') + 7))"
#: Due deliveries in turns: every receiver's oldest first, then every receiver's second..., first
#: attempts before retries within a turn. Oldest-first alone let one receiver's backlog (a receiver
#: that never answers, its retries coming back first) take every slot from everyone else's webhooks.
FAIR_DUE = (
    "SELECT seq FROM (SELECT seq, next_at, attempts, row_number() OVER "
    f"(PARTITION BY {RECEIVER} ORDER BY next_at, seq) AS turn FROM webhook_deliveries "
    "WHERE state = 'pending' AND next_at <= ?) ORDER BY turn, attempts > 0, next_at, seq LIMIT ?"
)


class WebhookDeliveries:
    """Mixed into SqliteStore. Like the jobs' writes, every change is one statement guarded by the
    row's state, so two processes sending from one file settle who sends what in the database."""

    if TYPE_CHECKING:

        async def _write(self, op: Callable[[sqlite3.Connection], Any]) -> Any: ...

        async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]: ...

    async def add_delivery(self, job_id: str, event: str, url: str, payload: bytes, now_ms: int) -> Delivery:
        def op(conn: sqlite3.Connection) -> Delivery:
            row = conn.execute(
                "INSERT INTO webhook_deliveries (id, job_id, event, url, payload, state, next_at, created_at, "
                f"updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?) RETURNING {DELIVERY_COLUMNS}",
                (new_delivery_id(), job_id, event, url, payload, now_ms, now_ms, now_ms),
            ).fetchone()
            return delivery_of_row(row)

        return await self._write(op)  # type: ignore[no-any-return]

    async def claim_deliveries(self, now_ms: int, limit: int, lease_ms: int) -> list[Delivery]:
        def op(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                f"UPDATE webhook_deliveries SET next_at = ? WHERE seq IN ({FAIR_DUE}) "
                f"AND state = 'pending' AND next_at <= ? RETURNING {DELIVERY_COLUMNS}",
                (now_ms + lease_ms, now_ms, limit, now_ms),
            ).fetchall()
            return [delivery_of_row(r) for r in sorted(rows, key=lambda r: r["seq"])]

        return await self._write(op)  # type: ignore[no-any-return]

    async def record_delivery(
        self,
        delivery_id: str,
        state: str,
        next_at_ms: int | None,
        status: int | None,
        error: str | None,
        now_ms: int,
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, next_at = ?, last_status = ?, "
                "last_error = ?, updated_at = ? WHERE id = ? AND state = 'pending'",
                (state, next_at_ms, status, error, now_ms, delivery_id),
            )

        await self._write(op)

    async def release_deliveries(self, delivery_ids: list[str], now_ms: int) -> None:
        if not delivery_ids:
            return

        def op(conn: sqlite3.Connection) -> None:
            marks = ",".join("?" * len(delivery_ids))
            conn.execute(
                f"UPDATE webhook_deliveries SET next_at = ? WHERE id IN ({marks}) AND state = 'pending'",
                (now_ms, *delivery_ids),
            )

        await self._write(op)

    async def deliveries(self, job_id: str, limit: int) -> list[Delivery]:
        rows = await self._read(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE job_id = ? ORDER BY seq DESC LIMIT ?",
            (job_id, limit),
        )
        return [delivery_of_row(r) for r in reversed(rows)]

    async def delivery_counts(self) -> dict[str, int]:
        rows = await self._read("SELECT state, count(*) FROM webhook_deliveries GROUP BY state")
        return {r[0]: r[1] for r in rows}

    async def jobs_missing_delivery(self, since_ms: int, limit: int) -> list[str]:
        rows = await self._read(
            "SELECT j.id FROM jobs j WHERE j.webhook IS NOT NULL AND j.completed_at >= ? "
            "AND j.status IN ('completed', 'partial', 'failed', 'cancelled') AND NOT EXISTS "
            "(SELECT 1 FROM webhook_deliveries d WHERE d.job_id = j.id AND d.event = j.status) "
            "ORDER BY j.completed_at LIMIT ?",
            (since_ms, limit),
        )
        return [r[0] for r in rows]
