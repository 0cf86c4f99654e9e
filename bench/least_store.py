"""The least a durable job store could cost in one process: bench_floors.py's most generous floor.

Not litejobs' store and not a design for one: a measuring stick. A sqlite3 connection (WAL,
synchronous=NORMAL, as SqliteStore) used on the event loop's own thread, so no thread hop and no
GIL hand-off; every call made during one pass of the loop shares one transaction, committed at the
end of that pass. The schema holds only what a claim and a finish need: no owner, lease, attempts,
guard of the transition, savepoint per operation, idempotency or error handling. If fetch jobs on
this store still miss the target ratio, no store that keeps each result on disk before the job
counts as done will meet it in one process on this machine.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from typing import Any

SCHEMA = """
CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, status TEXT NOT NULL,
                   priority INTEGER NOT NULL, run_at INTEGER NOT NULL, input TEXT NOT NULL);
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at) WHERE status = 'waiting';
CREATE TABLE results (job_id TEXT PRIMARY KEY, outputs TEXT NOT NULL);
"""

CLAIM = (
    "UPDATE jobs SET status = 'active' WHERE seq IN (SELECT seq FROM jobs WHERE status = 'waiting' "
    "ORDER BY priority DESC, run_at LIMIT ?) RETURNING id, input"
)


class LeastStore:
    """submit / claim / finish, each awaited until the loop pass's transaction has committed."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(SCHEMA)
        self._pending: list[tuple[str, Any, asyncio.Future[Any]]] = []
        self.commits = 0

    def close(self) -> None:
        self._conn.close()

    def submit(self, inputs: list[str]) -> asyncio.Future[list[str]]:
        """Store each JSON input as a waiting job; their ids."""
        return self._queue("submit", inputs)

    def claim(self, limit: int) -> asyncio.Future[list[tuple[str, str]]]:
        """Up to `limit` waiting jobs made active: (id, input) each."""
        return self._queue("claim", limit)

    def finish(self, job_id: str, outputs_json: str) -> asyncio.Future[None]:
        return self._queue("finish", (job_id, outputs_json))

    def _queue(self, what: str, arg: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._commit)
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((what, arg, future))
        return future

    def _commit(self) -> None:
        pending, self._pending = self._pending, []
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        answers: list[tuple[asyncio.Future[Any], Any]] = []
        finishes = [arg for what, arg, _ in pending if what == "finish"]
        if finishes:
            conn.executemany("UPDATE jobs SET status = 'completed' WHERE id = ?", [(job_id,) for job_id, _ in finishes])
            conn.executemany("INSERT INTO results (job_id, outputs) VALUES (?, ?)", finishes)
        for what, arg, future in pending:
            if what == "submit":
                ids = [uuid.uuid4().hex for _ in arg]
                conn.executemany(
                    "INSERT INTO jobs (id, status, priority, run_at, input) VALUES (?, 'waiting', 0, 0, ?)",
                    list(zip(ids, arg, strict=True)),
                )
                answers.append((future, ids))
            elif what == "claim":
                answers.append((future, conn.execute(CLAIM, (arg,)).fetchall()))
            else:
                answers.append((future, None))
        conn.execute("COMMIT")
        self.commits += 1
        for future, value in answers:
            if not future.done():
                future.set_result(value)
