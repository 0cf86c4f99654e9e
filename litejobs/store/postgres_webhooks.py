"""The webhook-delivery half of PostgresStore: the SQL of the webhook_deliveries table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litejobs.store import Delivery
from litejobs.store.rows import DELIVERY_COLUMNS, delivery_of_row, new_delivery_id

#: The receiver of a delivery, as in SQLite (sqlite_webhooks.RECEIVER) and webhooks.receiver_of
RECEIVER = "lower(substr(url, 1, strpos(substr(url, 9) || '/', '/') + 7))"
#: Due deliveries in turns across receivers, as in SQLite. A lock cannot sit beside a window
#: function: the turns are ranked first, then the chosen rows locked, skipping those another node is
#: claiming (twice `limit` candidates, so that a node that loses a race still finds some).
FAIR_DUE = (
    "SELECT d.seq FROM webhook_deliveries d JOIN (SELECT seq, turn, attempts > 0 AS retry, next_at FROM "
    f"(SELECT seq, next_at, attempts, row_number() OVER (PARTITION BY {RECEIVER} ORDER BY next_at, seq) AS turn "
    "FROM webhook_deliveries WHERE state = 'pending' AND next_at <= $2) ranked "
    "ORDER BY turn, retry, next_at, seq LIMIT 2 * $3) r ON r.seq = d.seq "
    "ORDER BY r.turn, r.retry, r.next_at, r.seq LIMIT $3 FOR UPDATE OF d SKIP LOCKED"
)


class WebhookDeliveries:
    """Mixed into PostgresStore. A claim pushes next_at a lease ahead in one statement that skips
    rows another node is claiming, so every node may send and none sends a delivery twice at once."""

    if TYPE_CHECKING:

        async def _fetch(self, sql: str, *args: Any) -> list[Any]: ...

    async def add_delivery(self, job_id: str, event: str, url: str, payload: bytes, now_ms: int) -> Delivery:
        rows = await self._fetch(
            "INSERT INTO webhook_deliveries (id, job_id, event, url, payload, state, next_at, created_at, "
            f"updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $6) RETURNING {DELIVERY_COLUMNS}",
            new_delivery_id(),
            job_id,
            event,
            url,
            payload,
            now_ms,
        )
        return delivery_of_row(rows[0])

    async def claim_deliveries(self, now_ms: int, limit: int, lease_ms: int) -> list[Delivery]:
        rows = await self._fetch(
            f"UPDATE webhook_deliveries SET next_at = $1 WHERE seq IN ({FAIR_DUE}) "
            f"AND state = 'pending' AND next_at <= $2 RETURNING {DELIVERY_COLUMNS}",
            now_ms + lease_ms,
            now_ms,
            limit,
        )
        return [delivery_of_row(r) for r in sorted(rows, key=lambda r: r["seq"])]

    async def record_delivery(
        self,
        delivery_id: str,
        state: str,
        next_at_ms: int | None,
        status: int | None,
        error: str | None,
        now_ms: int,
    ) -> None:
        await self._fetch(
            "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1, next_at = $2, last_status = $3, "
            "last_error = $4, updated_at = $5 WHERE id = $6 AND state = 'pending'",
            state,
            next_at_ms,
            status,
            error,
            now_ms,
            delivery_id,
        )

    async def release_deliveries(self, delivery_ids: list[str], now_ms: int) -> None:
        if not delivery_ids:
            return
        await self._fetch(
            "UPDATE webhook_deliveries SET next_at = $1 WHERE id = ANY($2::text[]) AND state = 'pending'",
            now_ms,
            delivery_ids,
        )

    async def deliveries(self, job_id: str, limit: int) -> list[Delivery]:
        rows = await self._fetch(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE job_id = $1 ORDER BY seq DESC LIMIT $2",
            job_id,
            limit,
        )
        return [delivery_of_row(r) for r in reversed(rows)]

    async def delivery_counts(self) -> dict[str, int]:
        rows = await self._fetch("SELECT state, count(*) FROM webhook_deliveries GROUP BY state")
        return {r[0]: r[1] for r in rows}

    async def jobs_missing_delivery(self, since_ms: int, limit: int) -> list[str]:
        rows = await self._fetch(
            "SELECT j.id FROM jobs j WHERE j.webhook IS NOT NULL AND j.completed_at >= $1 "
            "AND j.status IN ('completed', 'partial', 'failed', 'cancelled') AND NOT EXISTS "
            "(SELECT 1 FROM webhook_deliveries d WHERE d.job_id = j.id AND d.event = j.status) "
            "ORDER BY j.completed_at LIMIT $2",
            since_ms,
            limit,
        )
        return [r[0] for r in rows]
