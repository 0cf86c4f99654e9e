"""QueueGauge: SqliteStore's `max_depth` check, exact across processes without a count per submit."""

from __future__ import annotations

import sqlite3

# one sub-count per partial index: `status IN (...)` would scan the whole table
_COUNT = (
    "SELECT (SELECT count(*) FROM jobs WHERE status = 'waiting') + (SELECT count(*) FROM jobs WHERE status = 'delayed')"
)


class QueueGauge:
    """Waiting + delayed jobs, for a write op (inside the write transaction, where SQLite lets no
    other writer in). An exact count takes time linear in the queue (0.3 ms at 10k jobs, 50 ms at
    1M), so it is taken only when the last count, plus every job this connection put in the queue
    since, could pass max_depth, or when that sum may be wrong: another connection (another process
    on the file) committed since the count, which `PRAGMA data_version` tells in a few µs, or a
    recovery may have requeued jobs. Claims and cancels only lower the depth, so the sum is an
    upper bound: a submit is refused only on an exact count. (Before: the sum was trusted below 90%
    for a second, and another process's submits were not in it: two processes accepted 181 for 100.)

    Ops run one at a time, some in the connection's thread; `recovering` is called on the loop's
    thread, so it only moves a counter that ops compare and never write."""

    def __init__(self) -> None:
        #: the last exact count, the data_version and recovery number it was taken at
        self._counted = 0
        self._version: int | None = None
        self._recoveries_seen = 0
        #: jobs this connection put in the queue since that count (submits, retries, backoffs, releases)
        self._added = 0
        self._recoveries = 0

    def added(self, jobs: int) -> None:
        """An op of this connection put `jobs` jobs back in the queue (to delayed or waiting)."""
        self._added += jobs

    def recovering(self) -> None:
        """A recovery is queued: it may requeue any number of jobs, so the next check counts."""
        self._recoveries += 1

    def depth(self, conn: sqlite3.Connection, fresh: int, max_depth: int) -> int:
        """The depth once this op's `fresh` jobs (already written in the transaction) are in: exact
        whenever it is over max_depth, an upper bound otherwise."""
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        recoveries = self._recoveries
        if version == self._version and recoveries == self._recoveries_seen:
            bound = self._counted + self._added + fresh
            if bound <= max_depth:
                self._added += fresh
                return bound
        (depth,) = conn.execute(_COUNT).fetchone()
        self._counted, self._version, self._recoveries_seen, self._added = int(depth), version, recoveries, 0
        return int(depth)
