"""`/v1/events` over several nodes on one PostgreSQL: a change is stamped with its writer's clock
before a commit that may land later, and nodes' clocks differ, so changes do not commit in the order
of their event ids; every stream still sends each status once, in order, and so does a resume."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from litejobs.api.events import LOOKBACK_MS
from tests.pg import pg_rows
from tests.support import FakeClock, LoopThread, ServerThread, TargetSite, make_config, wait_until
from tests.test_events import Events, LiveStream, now_ms, read_events, statuses_of

#: how far behind the other node's clock is: well within the stream's look-back
SKEW_MS = 3_000
assert SKEW_MS < LOOKBACK_MS


@contextmanager
def node(tmp_path: Path, name: str, pg_url: str, clock: FakeClock | None = None) -> Iterator[ServerThread]:
    """A node on the shared database. Its jobs here are delayed an hour: every change is an API call's."""
    folder = tmp_path / name
    folder.mkdir()
    config = make_config(folder, store={"url": pg_url})
    with ServerThread(config, clock=clock) as running:
        yield running


def lock_waits(url: str) -> int:
    """Statements of this database waiting for a row lock."""
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    return int(pg_rows(url, sql)[0][0])


class RowLock:
    """The test's own transaction holding one job's row: a change of that job reads the clock for its
    `updated_at`, then waits for the row, and commits only after `release()`."""

    def __init__(self, url: str, job_id: str) -> None:
        self._loop = LoopThread("row-lock")
        self._conn: Any = self._loop.call(self._lock(url, job_id))

    @staticmethod
    async def _lock(url: str, job_id: str) -> Any:
        import asyncpg

        conn = await asyncpg.connect(url)
        await conn.execute("BEGIN")
        await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job_id)
        return conn

    async def _commit(self) -> None:
        await self._conn.execute("COMMIT")
        await self._conn.close()

    def release(self) -> None:
        if self._conn is not None:
            self._loop.call(self._commit())
            self._conn = None
            self._loop.close()


def event_id(events: Events, job_id: str, status: str) -> str:
    return next(e["id"] for e in events if e["data"]["job_id"] == job_id and e["data"]["status"] == status)


def sent_once(events: Events) -> bool:
    """Each (job, status, id) snapshot came once, however many reads went over it again."""
    seen = collections.Counter((e["data"]["job_id"], e["data"]["status"], e["id"]) for e in events)
    return max(seen.values()) == 1


def test_a_change_committed_after_later_ones_were_read_reaches_the_stream_and_a_resume(
    tmp_path: Path, pg_url: str, site: TargetSite
) -> None:
    url = site.add_html("/p", "<p>x</p>")
    with node(tmp_path, "a", pg_url) as a, node(tmp_path, "b", pg_url) as b:
        stream = LiveStream(a, f"/v1/events?last_event_id={now_ms() - 1}")
        late = b.http.submit({"url": url}, delay_s=3600)["job_id"]
        assert wait_until(lambda: late in stream.job_ids(), 10)
        try:
            with ThreadPoolExecutor(1) as pool:
                lock = RowLock(pg_url, late)
                try:
                    cancelling = pool.submit(b.http.delete, f"/v1/jobs/{late}")
                    assert wait_until(lambda: lock_waits(pg_url) == 1, 10)  # stamped, waiting to commit
                    # stamped after the cancel, committed before it: once a's stream has it, it has
                    # read past the cancel's stamp
                    marker = b.http.submit({"url": url}, delay_s=3600)["job_id"]
                    assert wait_until(lambda: marker in stream.job_ids(), 10)
                finally:
                    lock.release()
                assert cancelling.result(30).status == 200

            assert wait_until(lambda: "cancelled" in statuses_of(stream.events, late), 10)
            assert statuses_of(stream.events, late) == ["delayed", "cancelled"]
            # one more change: one more read over the same window, which sends nothing twice
            later = b.http.submit({"url": url}, delay_s=3600)["job_id"]
            assert wait_until(lambda: later in stream.job_ids(), 10)
        finally:
            stream.close()
        assert sent_once(stream.events)

        # a client whose last event was the marker missed the cancel: a resume from there sends it
        since = event_id(stream.events, marker, "delayed")
        resumed = read_events(
            a,
            "/v1/events",
            lambda got: ("cancelled" in statuses_of(got, late)) and later in {e["data"]["job_id"] for e in got},
            headers={"Last-Event-ID": since},
            timeout_s=5,
        )
        assert statuses_of(resumed, late) == ["cancelled"] and sent_once(resumed)


def test_changes_stamped_by_a_node_whose_clock_is_behind_reach_the_streams_of_another(
    tmp_path: Path, pg_url: str, site: TargetSite
) -> None:
    url = site.add_html("/p", "<p>x</p>")
    behind = FakeClock()
    behind.offset_ms = -SKEW_MS
    with node(tmp_path, "a", pg_url) as a, node(tmp_path, "b", pg_url, clock=behind) as b:
        mine = a.http.submit({"url": url}, delay_s=3600)["job_id"]  # "delayed", stamped by a
        [had] = read_events(a, f"/v1/jobs/{mine}/events", until=1)  # a client of its own stream
        stream = LiveStream(a, "/v1/events")
        try:
            theirs = b.http.submit({"url": url}, delay_s=3600)["job_id"]  # stamped before the stream began
            assert wait_until(lambda: theirs in stream.job_ids(), 10)
            assert b.http.delete(f"/v1/jobs/{theirs}").status == 200
            # cancelled by b: stamped before its "delayed", and still the newer
            assert b.http.delete(f"/v1/jobs/{mine}").status == 200
            assert wait_until(
                lambda: [statuses_of(stream.events, j) for j in (mine, theirs)] == [["delayed", "cancelled"]] * 2, 10
            )
        finally:
            stream.close()
        assert sent_once(stream.events)
        ids = {j: [int(e["id"]) for e in stream.events if e["data"]["job_id"] == j] for j in (mine, theirs)}
        assert ids[mine][1] < ids[mine][0]  # the event ids say otherwise: they are two nodes' clocks

        # the job's own stream, resumed from the event its client had, sends the cancel: not a 204
        resumed = read_events(a, f"/v1/jobs/{mine}/events", until=2, headers={"Last-Event-ID": had["id"]})
        assert [e["data"]["status"] for e in resumed] == ["cancelled"]
        # and once the client has it, the stream is over
        ended = a.http.get(f"/v1/jobs/{mine}/events", headers={"Last-Event-ID": resumed[0]["id"]})
        assert ended.status == 204
