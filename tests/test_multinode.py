"""Two litejobs processes on one PostgreSQL: one queue, no attempt run twice at once, a dead node's
jobs finished by the other once their leases expire; a lost LISTEN connection comes back; a wait or
a stream on one node sees the changes another node makes."""

from __future__ import annotations

import asyncio
import collections
import http.client
import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support import Response, ServerProcess, TargetSite, wait_until

JOBS = 2000
BATCH = 100


async def _query(url: str, sql: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def query(url: str, sql: str) -> list[Any]:
    return asyncio.run(_query(url, sql))


def statuses(url: str) -> dict[str, int]:
    return {r[0]: r[1] for r in query(url, "SELECT status, count(*) FROM jobs GROUP BY status")}


class Overlaps:
    """A target page that notes, per job (?n=), how many fetches of it were ever in flight at once."""

    def __init__(self, site: TargetSite, delay_s: float) -> None:
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.most: collections.Counter[str] = collections.Counter()
        self.url = site.add("/job", self._handler)
        self.delay_s = delay_s

    async def _handler(self, request: web.Request) -> web.Response:
        n = request.query["n"]
        self.in_flight[n] += 1
        self.most[n] = max(self.most[n], self.in_flight[n])
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight[n] -= 1
        return web.Response(text=f"<p>{n}</p>", content_type="text/html")


def node(tmp_path: Path, name: str, pg_url: str) -> ServerProcess:
    return ServerProcess(
        tmp_path / f"{name}.db",
        env={
            "LITEJOBS_STORE_URL": pg_url,
            "LITEJOBS_STORE_FILES_DIR": str(tmp_path / "files"),
            "LITEJOBS_QUEUE_CONCURRENCY": "16",
            "LITEJOBS_QUEUE_LEASE_S": "2",
        },
    )


@pytest.mark.slow
def test_two_nodes_share_the_queue_and_survive_one_sigkill(tmp_path: Path, site: TargetSite, pg_url: str) -> None:
    target = Overlaps(site, 0.05)
    one, two = node(tmp_path, "one", pg_url), node(tmp_path, "two", pg_url)
    try:
        for start in range(0, JOBS, BATCH):
            body = {"jobs": [{"input": {"url": f"{target.url}?n={n}"}} for n in range(start, start + BATCH)]}
            resp = (one if start // BATCH % 2 == 0 else two).http.post("/v1/jobs/batch", body)
            assert resp.status == 202, resp.body

        def both_busy() -> bool:
            owners = query(pg_url, "SELECT DISTINCT split_part(lease_owner, ':', 2) FROM jobs WHERE status = 'active'")
            return len(owners) == 2 and statuses(pg_url).get("completed", 0) >= JOBS // 4

        assert wait_until(both_busy, 60), statuses(pg_url)
        one.kill()
        assert wait_until(lambda: statuses(pg_url) == {"completed": JOBS}, 120), statuses(pg_url)

        # the kill left jobs mid-run; the other node recovered them and finished them
        lost = query(pg_url, "SELECT count(*) FROM attempts WHERE outcome = 'lost'")
        assert lost[0][0] > 0
        assert max(target.most.values()) == 1  # no job was ever fetched twice at once
        assert len(target.most) == JOBS
        # the store's record agrees: each job's attempts follow one another
        overlapping = query(
            pg_url,
            "SELECT count(*) FROM attempts a JOIN attempts b ON a.job_id = b.job_id AND a.number < b.number "
            "WHERE a.ended_at IS NULL OR a.ended_at > b.started_at",
        )
        assert overlapping[0][0] == 0
        runners = query(pg_url, "SELECT DISTINCT split_part(lease_owner, ':', 2) FROM jobs")
        assert {r[0] for r in runners} == {str(one.proc.pid), str(two.proc.pid)}
    finally:
        if one.proc.poll() is None:
            one.kill()
        two.terminate()


# --- notices between nodes -----------------------------------------------------------------------

#: nodes that re-read the store only once a minute, and sweep a job 10 s after it ends: a 30 s wait
#: or a stream that learnt of the end only by re-reading would find the job gone (404, or a stream
#: that stops with no terminal event). Only a notice from the node that ended the job tells in time.
DEAF = {
    "LITEJOBS_STORE_RECHECK_S": "60",
    "LITEJOBS_STORE_RETENTION_S": "10",
    "LITEJOBS_STORE_SWEEP_INTERVAL_S": "0.5",
}


class Gate:
    """A target page that answers only once the test opens the gate: a job that runs until told."""

    def __init__(self, site: TargetSite) -> None:
        self.open = threading.Event()
        self.url = site.add("/gate", self._handler)
        self.site = site

    async def _handler(self, request: web.Request) -> web.Response:
        for _ in range(1200):  # at most 60 s, well inside the job's timeout
            if self.open.is_set():
                break
            await asyncio.sleep(0.05)
        return web.Response(text="<p>through</p>", content_type="text/html")

    def entered(self, times: int = 1) -> bool:
        return self.site.hits["/gate"] >= times


class EventStream(threading.Thread):
    """Reads an SSE stream in the background until the server ends it; `events` fills as they come."""

    def __init__(self, base_url: str, path: str) -> None:
        super().__init__(daemon=True)
        self.host, self.port = base_url.removeprefix("http://").split(":")
        self.path = path
        self.events: list[dict[str, Any]] = []
        self.start()

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=90)
        try:
            conn.request("GET", self.path)
            resp = conn.getresponse()
            current: dict[str, Any] = {}
            while line := resp.readline().decode():
                line = line.rstrip("\n")
                if line == "" and current:
                    self.events.append(current)
                    current = {}
                elif line.startswith(("event:", "data:")):
                    key, _, value = line.partition(": ")
                    current[key] = json.loads(value) if key == "data" else value
        finally:
            conn.close()


def long_poll(pool: ThreadPoolExecutor, server: ServerProcess, job_id: str) -> Future[Response]:
    return pool.submit(server.http.get, f"/v1/jobs/{job_id}?wait=30")


def listen_pids(url: str) -> set[int]:
    return {r[0] for r in query(url, "SELECT pid FROM pg_stat_activity WHERE application_name = 'litejobs-listen'")}


@pytest.mark.slow
def test_a_wait_and_a_stream_on_one_node_see_the_end_of_a_job_another_node_ran(
    tmp_path: Path, site: TargetSite, pg_url: str
) -> None:
    gate = Gate(site)
    runner = ServerProcess(tmp_path / "runner.db", env={"LITEJOBS_STORE_URL": pg_url, **DEAF})
    reader = ServerProcess(
        tmp_path / "reader.db", env={"LITEJOBS_STORE_URL": pg_url, "LITEJOBS_QUEUE_ENABLED": "false", **DEAF}
    )
    try:
        job_id = runner.http.submit({"url": gate.url})["job_id"]
        assert wait_until(gate.entered, 30)
        stream = EventStream(reader.base_url, f"/v1/jobs/{job_id}/events")
        assert wait_until(lambda: len(stream.events) >= 1, 30)  # "active", read when the stream opened
        with ThreadPoolExecutor(1) as pool:
            waiting = long_poll(pool, reader, job_id)
            time.sleep(0.5)  # let the long-poll begin; begun later, it would only find the end sooner
            gate.open.set()
            answer = waiting.result(60)
        stream.join(90)

        assert answer.status == 200 and answer.json["status"] == "completed", answer.body
        assert stream.events[0]["data"]["status"] == "active"
        assert stream.events[-1]["event"] == "status" and stream.events[-1]["data"]["status"] == "completed"
        # the reader re-read the job; the change is logged (and counted, and sent) by the runner alone
        ended = f"job {job_id} fetch completed"
        assert wait_until(lambda: any(ended in line for line in runner.output), 10)
        assert not any(ended in line for line in reader.output)
    finally:
        gate.open.set()
        runner.terminate()
        reader.terminate()


@pytest.mark.slow
def test_a_dropped_listen_connection_comes_back_and_other_nodes_notices_reach_it_again(
    tmp_path: Path, site: TargetSite, pg_url: str
) -> None:
    gate = Gate(site)
    page = site.add_html("/page", "<p>quick</p>")
    env = {"LITEJOBS_STORE_URL": pg_url, **DEAF}
    # `other` has one worker slot, which the first job holds until the gate opens; started first, so
    # that this job is its own
    other = ServerProcess(tmp_path / "other.db", env={**env, "LITEJOBS_QUEUE_CONCURRENCY": "1"})
    node = None
    try:
        held = other.http.submit({"url": gate.url})["job_id"]
        assert wait_until(gate.entered, 30)
        node = ServerProcess(tmp_path / "node.db", env=env)
        before = listen_pids(pg_url)
        assert len(before) == 2

        query(
            pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'litejobs-listen'"
        )
        assert wait_until(lambda: len(listen_pids(pg_url)) == 2 and not listen_pids(pg_url) & before, 30)

        # work submitted to the other node (whose only slot is taken) is for `node` to run
        quick = other.http.submit({"url": page})["job_id"]
        assert other.http.wait(quick)["status"] == "completed"
        [[owner]] = query(pg_url, f"SELECT split_part(lease_owner, ':', 2) FROM jobs WHERE id = '{quick}'")
        assert owner == str(node.proc.pid)
        # and the end of the other node's job reaches a wait on `node`: its new connection LISTENs
        with ThreadPoolExecutor(1) as pool:
            waiting = long_poll(pool, node, held)
            time.sleep(0.5)
            gate.open.set()
            answer = waiting.result(60)
        assert answer.status == 200 and answer.json["status"] == "completed", answer.body

        # each node said once that it lost the connection, and once that it is back
        for server in (node, other):
            assert wait_until(
                lambda s=server: any("LISTEN connection to PostgreSQL is back" in x for x in s.output), 10
            )
            assert sum("LISTEN connection to PostgreSQL was lost" in line for line in server.output) == 1
            assert sum("LISTEN connection to PostgreSQL is back" in line for line in server.output) == 1
    finally:
        gate.open.set()
        other.terminate()
        if node is not None:
            node.terminate()
