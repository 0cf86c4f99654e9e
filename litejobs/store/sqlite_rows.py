"""Rows and statements shared by the SQLite store's modules: job columns, JSON, guards, attempts."""

from __future__ import annotations

import sqlite3
from typing import Any

from litejobs.jobs import Job
from litejobs.store.rows import JOB_COLUMNS, dumps, job_of_row, loads  # noqa: F401  (re-exported)

QUEUED = "('waiting', 'delayed')"


def read_rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
    cursor = conn.execute(sql, params)
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


def fetch_job(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else job_of_row(row)


def statements_of(script: str) -> list[str]:
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


#: A claimed job's attempt row. Its run is derived, not kept on the job: attempt 1 opens a new run
#: (a retry reset attempts to 0), a later one continues the latest run. A released attempt's row is
#: deleted, so the next claim numbers it again. OR REPLACE: a database from before runs may hold a
#: retried job's stale rows in run 1, and they must not stop the claim.
OPEN_ATTEMPT = (
    "INSERT OR REPLACE INTO attempts (job_id, run, number, started_at) VALUES (:job_id, "
    "(SELECT CASE WHEN :number = 1 THEN coalesce(max(run), 0) + 1 ELSE coalesce(max(run), 1) END "
    "FROM attempts WHERE job_id = :job_id), :number, :now_ms)"
)


def open_attempts(conn: sqlite3.Connection, jobs: list[Job], now_ms: int) -> None:
    conn.executemany(OPEN_ATTEMPT, [{"job_id": j.id, "number": j.attempts, "now_ms": now_ms} for j in jobs])


def end_attempt(conn: sqlite3.Connection, job_id: str, now_ms: int, outcome: str, error: Any) -> None:
    conn.execute(
        "UPDATE attempts SET ended_at = ?, outcome = ?, error = ? WHERE job_id = ? AND ended_at IS NULL",
        (now_ms, outcome, None if error is None else dumps(error), job_id),
    )


def claimable(candidates: list[sqlite3.Row], idle: bool) -> list[int]:
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
