"""Server-Sent Events: a job's stream ends at its terminal status; `/v1/events` sends every job's
statuses in order, any number changed in one millisecond; Last-Event-ID resumes."""

from __future__ import annotations

import asyncio
import collections
import http.client
import inspect
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from litejobs.api.events import INBOX_MAX, LOOKBACK_MS
from litejobs.config import Config
from litejobs.jobs import Job
from litejobs.store import open_store
from tests.support import FakeClock, ServerThread, TargetSite, make_config, wait_until

Events = list[dict[str, Any]]


@pytest.fixture
def store_server(tmp_path: Path, clock: FakeClock, store_url: str) -> Iterator[ServerThread]:
    """The real server on SQLite, then on PostgreSQL (store_url is parametrized over both)."""
    with ServerThread(make_config(tmp_path, store={"url": store_url}), clock=clock) as running:
        yield running


def parse_events(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The events of a text/event-stream as they come, until the stream ends."""
    current: dict[str, Any] = {}
    while line := resp.readline().decode():
        line = line.rstrip("\n")
        if line == "" and current:
            yield current
            current = {}
        elif line.startswith(("id:", "event:", "data:")):
            key, _, value = line.partition(": ")
            current[key] = json.loads(value) if key == "data" else value


def read_events(
    server: ServerThread,
    path: str,
    until: int | Callable[[Events], bool],
    headers: dict[str, str] | None = None,
    timeout_s: float = 20,
) -> Events:
    """Read events until there are `until` of them (or `until(events)` holds), the server ends the
    stream, or `timeout_s` passes with nothing to read."""
    done = until if callable(until) else lambda got: len(got) >= until
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout_s)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type", "").startswith("text/event-stream")
    events: Events = []
    try:
        for event in parse_events(resp):
            events.append(event)
            if done(events):
                break
    except TimeoutError:
        pass  # nothing more came: the caller's asserts say what was missing
    finally:
        conn.close()
    return events


class LiveStream:
    """An event stream read in the background: `events` fills as they come, until `close()`."""

    def __init__(self, server: ServerThread, path: str) -> None:
        self.events: Events = []
        self._conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self._conn.request("GET", path)
        self._sock = self._conn.sock
        resp = self._conn.getresponse()
        assert resp.status == 200
        self._reader = threading.Thread(target=self._read, args=(resp,), daemon=True)
        self._reader.start()

    def _read(self, resp: http.client.HTTPResponse) -> None:
        try:
            for event in parse_events(resp):
                self.events.append(event)
        except (OSError, ValueError):
            pass  # closed under the reader

    def job_ids(self) -> list[str]:
        return [e["data"]["job_id"] for e in list(self.events)]

    def close(self) -> None:
        assert self._sock is not None
        self._sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(10)
        self._conn.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def open_live(server: ServerThread, url: str) -> LiveStream:
    """`/v1/events`, once it is surely live: a delayed marker job submitted after opening has arrived."""
    stream = LiveStream(server, f"/v1/events?last_event_id={now_ms() - 1}")
    marker = server.http.submit({"url": url}, delay_s=3600)["job_id"]
    assert wait_until(lambda: marker in stream.job_ids(), 10)
    return stream


def delayed_batch(server: ServerThread, url: str, size: int) -> list[str]:
    jobs = [{"kind": "fetch", "input": {"url": url}, "delay_s": 3600}] * size
    resp = server.http.post("/v1/jobs/batch", {"jobs": jobs})
    assert resp.status == 202, resp.body[:300]
    return [job["job_id"] for job in resp.json["jobs"]]


def test_a_job_stream_shows_each_status_and_ends(server: ServerThread, site: TargetSite) -> None:
    gate = threading.Event()

    async def held(request: web.Request) -> web.Response:
        for _ in range(200):
            if gate.is_set():
                break
            await asyncio.sleep(0.02)
        return web.Response(text="<p>done</p>", content_type="text/html")

    job = server.http.submit({"url": site.add("/held", held)})
    threading.Timer(0.5, gate.set).start()
    events = read_events(server, f"/v1/jobs/{job['job_id']}/events", until=10)
    statuses = [e["data"]["status"] for e in events]
    assert statuses[-1] == "completed" and "active" in statuses
    assert all(e["event"] == "status" for e in events)
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids)
    # resuming from before: the current state comes again
    again = read_events(server, f"/v1/jobs/{job['job_id']}/events", 10, {"Last-Event-ID": str(ids[0])})
    assert [e["data"]["status"] for e in again] == ["completed"]


def test_the_all_jobs_stream_resumes_from_last_event_id(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<p>x</p>")
    first = server.http.submit({"url": url})
    server.http.wait(first["job_id"])
    events = read_events(server, "/v1/events?last_event_id=0", until=1)
    assert events and events[0]["data"]["job_id"] == first["job_id"]
    last = int(events[0]["id"])
    second = server.http.submit({"url": url}, delay_s=60)
    resumed = read_events(
        server,
        f"/v1/events?last_event_id={last}",
        lambda got: got[-1]["data"]["job_id"] == second["job_id"],
        timeout_s=5,
    )
    assert resumed[-1]["data"]["job_id"] == second["job_id"] and resumed[-1]["data"]["status"] == "delayed"
    # the millisecond of the id again (a batch shares one), so the first job may come again: nothing older
    assert {e["data"]["job_id"] for e in resumed} <= {first["job_id"], second["job_id"]}


def test_resuming_a_finished_job_past_its_last_event_answers_204(store_server: ServerThread, site: TargetSite) -> None:
    job = store_server.http.submit({"url": site.add_html("/p", "<p>x</p>")})
    events = read_events(store_server, f"/v1/jobs/{job['job_id']}/events", until=10)
    assert events[-1]["data"]["status"] == "completed"
    # 204, not an empty 200: an EventSource reconnects after a 200 that ends, and stops at a 204
    resumed = store_server.http.get(f"/v1/jobs/{job['job_id']}/events", headers={"Last-Event-ID": events[-1]["id"]})
    assert resumed.status == 204 and resumed.body == b""


def test_a_batch_bigger_than_a_page_arrives_whole_and_the_stream_goes_on(
    store_server: ServerThread, site: TargetSite
) -> None:
    url = site.add_html("/p", "<p>x</p>")
    since = now_ms() - 1
    stream = open_live(store_server, url)
    batch = delayed_batch(store_server, url, 600)  # one millisecond for all: more than a page of the store
    later = store_server.http.submit({"url": url}, delay_s=3600)["job_id"]
    try:
        assert wait_until(lambda: later in stream.job_ids(), 20)
        assert set(batch) <= set(stream.job_ids())
        assert max(collections.Counter(stream.job_ids()).values()) == 1  # each change sent once
    finally:
        stream.close()
    resumed = read_events(
        store_server, f"/v1/events?last_event_id={since}", lambda got: got[-1]["data"]["job_id"] == later
    )
    resumed_ids = [e["data"]["job_id"] for e in resumed]
    assert set(batch) <= set(resumed_ids) and resumed_ids[-1] == later
    assert len(resumed_ids) == len(set(resumed_ids))


def test_a_stream_that_falls_behind_reads_the_store_instead_and_misses_no_job(
    tmp_path: Path, store_url: str, site: TargetSite
) -> None:
    size = INBOX_MAX + 100  # all published at once: more than a stream holds for its client
    with ServerThread(make_config(tmp_path, store={"url": store_url}, limits={"max_batch": size})) as server:
        url = site.add_html("/p", "<p>x</p>")
        stream = open_live(server, url)
        batch = delayed_batch(server, url, size)
        later = server.http.submit({"url": url}, delay_s=3600)["job_id"]
        try:
            assert wait_until(lambda: later in stream.job_ids(), 20)
            assert set(batch) <= set(stream.job_ids())
            assert max(collections.Counter(stream.job_ids()).values()) == 1
        finally:
            stream.close()


def test_a_resume_after_the_first_job_of_a_batch_sends_the_others(store_server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/p", "<p>x</p>")
    since = now_ms() - 1
    batch = delayed_batch(store_server, url, 3)  # one millisecond: one event id for all three
    [first] = read_events(store_server, f"/v1/events?last_event_id={since}", until=1)
    resumed = read_events(store_server, "/v1/events", until=3, headers={"Last-Event-ID": first["id"]}, timeout_s=3)
    others = set(batch) - {first["data"]["job_id"]}
    assert others <= {e["data"]["job_id"] for e in resumed}


def test_the_all_jobs_stream_shows_every_status_of_fast_jobs_in_order(server: ServerThread, site: TargetSite) -> None:
    # SQLite's `server` only: on PostgreSQL a claim racing its submit may be published before the submit is
    url = site.add_html("/fast", "<p>x</p>")
    stream = open_live(server, url)
    jobs = [server.http.submit({"url": url})["job_id"] for _ in range(30)]
    try:
        for job_id in jobs:
            assert server.http.wait(job_id)["status"] == "completed"
        assert wait_until(lambda: all(statuses_of(stream.events, j)[-1:] == ["completed"] for j in jobs), 10)
    finally:
        stream.close()
    seen = {tuple(statuses_of(stream.events, job_id)) for job_id in jobs}
    assert seen == {("waiting", "active", "completed")}


def statuses_of(events: Events, job_id: str) -> list[str]:
    """The statuses one job's events showed, in order, each once."""
    statuses: list[str] = []
    for event in list(events):
        status = event["data"]["status"]
        if event["data"]["job_id"] == job_id and statuses[-1:] != [status]:
            statuses.append(status)
    return statuses


def change_late(config: Config, job_id: str, ago_ms: int) -> None:
    """Cancel a job from another writer on the same store (another process on the SQLite file,
    another node), its change stamped `ago_ms` before it commits: as a write whose commit waited,
    committed after the streams' reads went past its stamp. Only a store read can find it."""

    async def cancel() -> None:
        async with open_store(config.store) as store:
            await store.cancel(job_id, now_ms() - ago_ms, now_ms() + 3_600_000)

    asyncio.run(cancel())


def has_status(stream: LiveStream, job_id: str, status: str) -> bool:
    return status in statuses_of(stream.events, job_id)


def test_changes_committed_late_inside_the_look_back_are_sent_once_and_reads_resend_nothing(
    tmp_path: Path, store_url: str, site: TargetSite
) -> None:
    config = make_config(tmp_path, store={"url": store_url, "recheck_s": 0.05})  # many reads over the window
    with ServerThread(config) as server:
        url = site.add_html("/p", "<p>x</p>")
        stream = open_live(server, url)
        jobs = delayed_batch(server, url, 4)
        try:
            assert wait_until(lambda: set(jobs) <= set(stream.job_ids()), 10)
            # each found by a read that went over the window again, with the others' sent versions in it
            for job_id, ago_ms in zip(jobs, (LOOKBACK_MS - 2_000, 1_500, 1_000, 500), strict=True):
                change_late(config, job_id, ago_ms)
                assert wait_until(lambda job_id=job_id: has_status(stream, job_id, "cancelled"), 10)
        finally:
            stream.close()
    assert [statuses_of(stream.events, job_id) for job_id in jobs] == [["delayed", "cancelled"]] * 4
    assert len(stream.events) == 1 + 2 * len(jobs)  # the marker, then each version once


class JobsRead:
    """The server's real store, counting the whole jobs its reads return: each is a row read and
    parsed, the cost of a stream's reads that go over the same changes again and again."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.count = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if not inspect.iscoroutinefunction(method):
            return method

        async def counted(*args: Any, **kwargs: Any) -> Any:
            result = await method(*args, **kwargs)
            self.count += jobs_in(result)
            return result

        return counted


def jobs_in(result: Any) -> int:
    """The whole jobs in what a store read returned: a list of jobs or of (seq, job), or a dict of them."""
    items = result.values() if isinstance(result, dict) else result if isinstance(result, list) else []
    return sum(
        isinstance(item, Job) or (isinstance(item, tuple) and any(isinstance(x, Job) for x in item)) for item in items
    )


def test_reads_over_the_look_back_read_whole_only_the_jobs_not_sent(
    tmp_path: Path, store_url: str, site: TargetSite
) -> None:
    config = make_config(tmp_path, store={"url": store_url, "recheck_s": 0.05})
    with ServerThread(config) as server:
        assert server.app is not None
        url = site.add_html("/p", "<p>x</p>")
        stream = open_live(server, url)
        jobs = delayed_batch(server, url, 50)
        try:
            assert wait_until(lambda: set(jobs) <= set(stream.job_ids()), 10)
            real, server.app.store = server.app.store, JobsRead(server.app.store)
            late = jobs[:3]
            for job_id in late:  # each found by a read over the window: every job of the batch is in it
                change_late(config, job_id, 1_000)
                assert wait_until(lambda job_id=job_id: has_status(stream, job_id, "cancelled"), 10)
            spy, server.app.store = server.app.store, real
        finally:
            stream.close()
    # the changed jobs only, whatever the number of reads: not the whole window each time
    assert spy.count == len(late)
    assert len(stream.events) == 1 + len(jobs) + len(late)
