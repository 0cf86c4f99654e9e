"""Job rows as both stores return them: JSON columns and the Job they make; no SQL here."""

from __future__ import annotations

import json
import secrets
from typing import Any

from litejobs.jobs import Job, JobState
from litejobs.store import Delivery


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def job_of_row(row: Any) -> Job:
    """A job from a row of either store (sqlite3.Row and asyncpg.Record both map by name)."""
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
        progress=loads(row["progress"]),
        error=loads(row["error"]),
        webhook=loads(row["webhook"]),
        recoveries=row["recoveries"],
        result_available=bool(row["result_available"]),
    )
    job.seq = row["seq"]  # type: ignore[attr-defined]
    job.request_hash = row["request_hash"]  # type: ignore[attr-defined]
    return job


DELIVERY_COLUMNS = (
    "seq, id, job_id, event, url, payload, state, attempts, next_at, last_status, last_error, created_at, updated_at"
)


def new_delivery_id() -> str:
    return "dlv_" + secrets.token_hex(12)


def delivery_of_row(row: Any) -> Delivery:
    return Delivery(
        id=row["id"],
        job_id=row["job_id"],
        event=row["event"],
        url=row["url"],
        payload=bytes(row["payload"]),
        state=row["state"],
        attempts=row["attempts"],
        next_at=row["next_at"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def stats_of(status_counts: list[Any], oldest_waiting_ms: int | None, now_ms: int) -> dict[str, Any]:
    """GET /v1/stats figures from `(status, count)` rows and the oldest waiting job's run_at."""
    counts = {state.value: 0 for state in JobState}
    for status, count in status_counts:
        counts[status] = count
    return {
        "counts": counts,
        "queue_depth": counts["waiting"] + counts["delayed"],
        "oldest_waiting_age_s": None if oldest_waiting_ms is None else max(0.0, (now_ms - oldest_waiting_ms) / 1000),
    }
