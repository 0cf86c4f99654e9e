"""Job rows as both stores return them: JSON columns and the Job they make, and the SQL both share."""

from __future__ import annotations

from typing import Any

from litejobs import jsontext
from litejobs.ids import random_hex
from litejobs.jobs import Attempt, Job, JobResult, JobState, sources_of
from litejobs.store import Delivery


def loads(text: str | None) -> Any:
    return None if text is None else jsontext.parse_stored(text)


def dumps(value: Any) -> str:
    return jsontext.text(value)


#: the sweep's condition in both stores: a job past its expiry stays while a delivery of its webhook is
#: pending (retries included); it goes at the first sweep after the delivery ends
NO_PENDING_DELIVERY = "NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.job_id = j.id AND d.state = 'pending')"

#: the columns of a job row, in this order in every SELECT and RETURNING of both stores
JOB_COLUMNS = (
    "seq, id, kind, owner, status, priority, run_at, input, meta, webhook, attempts, max_attempts, "
    "timeout_s, recoveries, lease_until, lease_owner, progress, error, result_available, "
    "created_at, updated_at, started_at, completed_at, expires_at, request_hash"
)
(
    _SEQ, _ID, _KIND, _OWNER, _STATUS, _PRIORITY, _RUN_AT, _INPUT, _META, _WEBHOOK, _ATTEMPTS, _MAX_ATTEMPTS,
    _TIMEOUT_S, _RECOVERIES, _LEASE_UNTIL, _LEASE_OWNER, _PROGRESS, _ERROR, _RESULT_AVAILABLE,
    _CREATED_AT, _UPDATED_AT, _STARTED_AT, _COMPLETED_AT, _EXPIRES_AT, _REQUEST_HASH,
) = range(len(JOB_COLUMNS.split(",")))  # fmt: skip


def job_of_row(row: Any) -> Job:
    """A job from a row of JOB_COLUMNS of either store (sqlite3.Row, asyncpg.Record). By position:
    sqlite3.Row finds a name by comparing it with each column in turn, half of this function's time."""
    job = Job(
        id=row[_ID],
        kind=row[_KIND],
        status=JobState(row[_STATUS]),
        input=jsontext.parse_stored(row[_INPUT]),
        owner=row[_OWNER],
        meta=jsontext.parse_stored(row[_META]),
        priority=row[_PRIORITY],
        attempts=row[_ATTEMPTS],
        max_attempts=row[_MAX_ATTEMPTS],
        timeout_s=float(row[_TIMEOUT_S]),
        created_at=row[_CREATED_AT],
        updated_at=row[_UPDATED_AT],
        run_at=row[_RUN_AT],
        started_at=row[_STARTED_AT],
        completed_at=row[_COMPLETED_AT],
        expires_at=row[_EXPIRES_AT],
        lease_until=row[_LEASE_UNTIL],
        progress=loads(row[_PROGRESS]),
        error=loads(row[_ERROR]),
        webhook=loads(row[_WEBHOOK]),
        recoveries=row[_RECOVERIES],
        result_available=bool(row[_RESULT_AVAILABLE]),
    )
    job.seq = row[_SEQ]  # type: ignore[attr-defined]
    job.request_hash = row[_REQUEST_HASH]  # type: ignore[attr-defined]
    return job


def guarded_status(target: JobState) -> str:
    """The SQL list of the statuses a job may move to `target` from (jobs.sources_of), for a guard
    `AND status IN (...)` that makes an illegal transition change no row, in both stores."""
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(sources_of(target))) + ")"


#: a cancelled job's result is the pages it finished (a crawl's): it has one if it has any
CANCELLED_RESULT = "result_available = EXISTS (SELECT 1 FROM pages WHERE pages.job_id = jobs.id)"

#: an attempt's columns, in the order attempt_of_row reads them, oldest first
ATTEMPT_COLUMNS = "run, number, started_at, ended_at, outcome, error"


def attempt_of_row(row: Any) -> Attempt:
    """An attempt from a row of ATTEMPT_COLUMNS, as both stores select it."""
    run, number, started_at, ended_at, outcome, error = row
    return Attempt(number, started_at, ended_at, outcome, loads(error), run)


def result_of_row(row: Any) -> JobResult:
    """A job's result from a row of (status, outputs, stats), as both stores select it."""
    return JobResult(JobState(row["status"]), loads(row["outputs"]), loads(row["stats"]))


DELIVERY_COLUMNS = (
    "seq, id, job_id, event, url, payload, state, attempts, next_at, last_status, last_error, created_at, updated_at"
)


def new_delivery_id() -> str:
    return "dlv_" + random_hex(12)


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
